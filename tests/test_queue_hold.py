"""A queue route's concurrency limit counts jobs: a slot is held from submit to result.

fal and Replicate charge a worker per job, not per request, so a limit of 2 must mean
2 jobs at the host, however long they wait between polls. The emulators run on a real
loopback socket with a `Capacity` on a test clock that moves only when the client's
injected sleep is asked to wait; the host's own ``max_in_service`` (read from
``GET /_emulator/stats``) is the most jobs it ever ran at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import anyio
import httpx
import pytest

from flux_sdk import (
    AdaptiveLimit,
    ConcurrencyLimit,
    Fal,
    FluxClient,
    FluxEvent,
    Replicate,
    Retry,
    Route,
    TransportError,
)
from flux_sdk.emulator import DEFAULT_API_KEY, Capacity, EmulatorApp, Fault, FaultPlan

from ._server import serve

pytestmark = pytest.mark.anyio

JOB_SECONDS = 1.0


class Time:
    """The emulator's clock and the client's sleep: a wait moves time on at once."""

    def __init__(self) -> None:
        self.now = 0.0
        self.frozen = False  # waits then last until the test ends them
        self.waiting = anyio.Event()

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.waiting.set()
        if self.frozen:
            await anyio.sleep_forever()
        self.now += seconds
        await anyio.lowlevel.checkpoint()


@pytest.fixture
def time() -> Time:
    return Time()


@pytest.fixture
def host(time: Time) -> Iterator[tuple[EmulatorApp, str]]:
    """fal and Replicate with room for 6 jobs at once: only the client can hold them to 2."""
    capacity = Capacity(replicas=6, median=JOB_SECONDS, clock=time)
    app = EmulatorApp(default_size=32, capacity={"fal": capacity, "replicate": capacity})
    with serve(app) as url:
        yield app, url


def fal(url: str) -> Fal:
    return Fal(DEFAULT_API_KEY, base_url=url)


def replicate(url: str) -> Replicate:
    return Replicate(DEFAULT_API_KEY, base_url=url, wait=None, poll_interval=0.1)


PROVIDERS: dict[str, Callable[[str], Fal | Replicate]] = {"fal": fal, "replicate": replicate}


async def stats(url: str) -> dict[str, Any]:
    async with httpx.AsyncClient() as http:
        answer = await http.get(f"{url}/_emulator/stats")
    hosts: dict[str, Any] = answer.json()["hosts"]
    return hosts


def limit_of(kind: str) -> ConcurrencyLimit:
    return ConcurrencyLimit(2) if kind == "fixed" else AdaptiveLimit(max=2)


@pytest.mark.parametrize("kind", ["fixed", "adaptive"])
@pytest.mark.parametrize("name", ["fal", "replicate"])
async def test_a_limit_of_2_runs_at_most_2_jobs_at_the_host(
    host: tuple[EmulatorApp, str], time: Time, name: str, kind: str
) -> None:
    _, url = host
    limit = limit_of(kind)
    busy: list[int] = []

    async def sleep(seconds: float) -> None:
        busy.append(limit.in_flight)  # a job waiting between polls is in flight
        await time.sleep(seconds)

    provider = PROVIDERS[name](url)
    async with FluxClient(provider, max_concurrency=limit, max_retries=Retry(3, sleep=sleep)) as f:
        images = await f.generate_images("a fox", 6)
    assert len(images) == 6
    seen = (await stats(url))[name]
    assert seen["billed"] == 6
    assert seen["max_in_service"] == 2  # never more than the limit, and all of it used
    assert max(busy) == 2
    assert limit.in_flight == 0


async def test_routes_hold_their_own_jobs_and_balance_on_them(
    host: tuple[EmulatorApp, str], time: Time
) -> None:
    """Each route's limit holds its jobs; a held job is load, so the router spreads the
    batch over both routes instead of queueing behind one."""
    _, url = host
    routes = [Route(fal(url), max_concurrency=2), Route(replicate(url), max_concurrency=2)]
    loads: list[list[int]] = []
    flux = FluxClient(routes, routing="balanced", max_retries=Retry(3, sleep=time.sleep))

    async def sleep(seconds: float) -> None:
        loads.append([route.in_flight for route in flux.routes])
        await time.sleep(seconds)

    flux.retry.sleep = sleep
    async with flux:
        images = await flux.generate_images("a fox", 8)
    assert len(images) == 8
    seen = await stats(url)
    assert seen["fal"]["max_in_service"] <= 2
    assert seen["replicate"]["max_in_service"] <= 2
    assert seen["fal"]["billed"] + seen["replicate"]["billed"] == 8
    assert [2, 2] in loads  # four jobs at once: both routes full
    assert flux.concurrency.in_flight == 0


@pytest.mark.parametrize("kind", ["fixed", "adaptive"])
@pytest.mark.parametrize("name", ["fal", "replicate"])
async def test_a_cancelled_job_frees_its_slot_after_its_cancel_reached_the_host(
    host: tuple[EmulatorApp, str], time: Time, name: str, kind: str
) -> None:
    app, url = host
    limit = ConcurrencyLimit(1) if kind == "fixed" else AdaptiveLimit(max=1)
    events: list[FluxEvent] = []
    time.frozen = True
    provider = PROVIDERS[name](url)
    retry = Retry(3, sleep=time.sleep)
    async with FluxClient(
        provider, max_concurrency=limit, max_retries=retry, on_event=events.append
    ) as flux:
        async with anyio.create_task_group() as group:
            group.start_soon(flux.generate, "stuck")
            await time.waiting.wait()  # accepted, waiting between polls: held
            assert limit.in_flight == 1
            assert app.load[name].in_service == 1
            group.cancel_scope.cancel()
        assert limit.in_flight == 0
        assert app.load[name].in_service == 0  # the host was told to cancel it
        assert [e.step for e in events if e.kind == "attempt"][-1] == "cancel"
        time.frozen = False
        with anyio.fail_after(30):  # the slot is free: the next job runs
            image = await flux.generate("next")
    assert image.provider == provider.name
    assert limit.in_flight == 0


async def test_a_held_job_is_one_answer_to_an_adaptive_limit_not_one_per_poll(
    host: tuple[EmulatorApp, str], time: Time
) -> None:
    """Starting at 1, the second job waits for the first (the host never runs two),
    and the first, ending with every slot held, grows the limit by one: its ten polls,
    answered while it held the only slot, count for nothing."""
    _, url = host
    limit = AdaptiveLimit(max=64, start=1)
    polls: list[FluxEvent] = []

    def on_event(event: FluxEvent) -> None:
        if event.kind == "attempt" and event.step == "poll":
            polls.append(event)

    provider = replicate(url)
    retry = Retry(3, sleep=time.sleep)
    async with FluxClient(
        provider, max_concurrency=limit, max_retries=retry, on_event=on_event
    ) as flux:
        await flux.generate_images("a fox", 2)
    assert (await stats(url))["replicate"]["max_in_service"] == 1
    assert len(polls) >= 2 * 9
    assert limit.limit == 2


@pytest.mark.parametrize("kind", ["fixed", "adaptive"])
@pytest.mark.parametrize("name", ["fal", "replicate"])
async def test_a_job_frees_its_slot_once_the_host_says_it_ended(
    host: tuple[EmulatorApp, str], time: Time, name: str, kind: str
) -> None:
    """The host's worker is free once the job's status says it ended: the slot goes back
    then, and the result and the download that follow take none (a slot held for them
    is a replica left idle). No cancel is sent for an ended job."""
    _, url = host
    limit = limit_of(kind)
    seen: list[tuple[str | None, int]] = []

    def on_event(event: FluxEvent) -> None:
        if event.kind == "attempt":
            seen.append((event.step, limit.in_flight))

    provider = PROVIDERS[name](url)
    retry = Retry(3, sleep=time.sleep)
    async with FluxClient(
        provider, max_concurrency=limit, max_retries=retry, on_event=on_event
    ) as flux:
        image = await flux.generate("a fox")
    assert image.provider == name
    steps = [step for step, _ in seen]
    assert steps[0] == "submit"
    assert steps[-1] == "download"
    assert "cancel" not in steps
    assert seen[0][1] == 1  # held from the accepted submit
    assert seen[-1][1] == 0  # the download: the slot was already back
    assert limit.in_flight == 0


@pytest.mark.parametrize("kind", ["fixed", "adaptive"])
@pytest.mark.parametrize("name", ["fal", "replicate"])
async def test_a_submit_whose_answer_was_lost_keeps_its_slot_for_a_jobs_time(
    time: Time, name: str, kind: str
) -> None:
    """The host took the job but its answer was cut: the job runs there, unseen, and
    counts against the host's capacity until it ends. Its slot stays taken for about a
    job's time (learned from the jobs before it), so the next submit is not refused."""
    capacity = Capacity(replicas=1, median=JOB_SECONDS, clock=time)
    faults = FaultPlan([None, Fault.TRUNCATED])  # the second submit's answer is cut
    app = EmulatorApp(default_size=32, capacity={name: capacity}, faults=faults)
    limit = ConcurrencyLimit(1) if kind == "fixed" else AdaptiveLimit(max=1)
    with serve(app) as url:
        retry = Retry(3, sleep=time.sleep)
        async with FluxClient(PROVIDERS[name](url), max_concurrency=limit, max_retries=retry) as f:
            await f.generate("a fox")  # how long a job takes here
            with pytest.raises(TransportError):  # maybe queued: not sent again
                await f.generate("a lost fox")
            assert limit.in_flight == 0
            await f.generate("a second fox")
    assert app.load[name].refused == 0  # never a submit while the lost job ran
    assert app.stats[name].billed == 3
    assert app.load[name].max_in_service == 1


async def test_fal_looks_first_when_its_jobs_have_been_ending(
    host: tuple[EmulatorApp, str], time: Time
) -> None:
    """The first job is polled on fal's fixed schedule; once the client knows how long
    jobs take there, the next is first polled about then: fewer polls, and the job (and
    its slot) is seen ended no later."""
    _, url = host
    polls: list[list[float]] = []

    async def sleep(seconds: float) -> None:
        polls[-1].append(seconds)
        await time.sleep(seconds)

    async with FluxClient(fal(url), max_retries=Retry(3, sleep=sleep)) as flux:
        for prompt in ("a fox", "a second fox", "a third fox"):
            polls.append([])
            await flux.generate(prompt)
    first, *later = polls
    assert first[0] == 0.25
    assert sum(first) >= JOB_SECONDS
    for waits in later:
        assert waits[0] > 0.25  # the first look comes when jobs have been ending
        assert len(waits) < len(first)
        assert JOB_SECONDS <= sum(waits) <= sum(first)


async def test_a_queue_route_is_timed_by_its_slot_not_by_its_download(
    host: tuple[EmulatorApp, str], time: Time, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Balanced routing weighs a route by how long a call holds a slot there: for a
    queue job, until the host said it ended. A slow download after that (the CDN, not
    the host's workers) does not make the host look slow."""
    from flux_sdk._routing import _live

    monkeypatch.setattr(_live, "_now", time)
    _, url = host

    async def slow_cdn(call: Any, call_next: Any) -> httpx.Response:
        if call.step is not None and call.step.kind == "download":
            time.now += 5.0
        response: httpx.Response = await call_next(call)
        return response

    routes = [Route(fal(url), max_concurrency=2), Route(replicate(url), max_concurrency=2)]
    async with FluxClient(
        routes,  # failover: the first call goes to fal, which has room
        max_retries=Retry(3, sleep=time.sleep),
        attempt_middleware=[slow_cdn],
    ) as flux:
        image = await flux.generate("a fox")
        assert flux._router is not None
        service = flux._router.routes[0].service
    assert image.provider == "fal"
    assert service is not None
    assert JOB_SECONDS <= service < JOB_SECONDS + 1.0


async def test_a_lost_submit_before_any_job_ended_keeps_its_slot_a_second(time: Time) -> None:
    """The very first submit's answer is cut: no job time is known yet, so its slot
    stays taken for a second (a short job's time), not given back at once."""
    capacity = Capacity(replicas=1, median=JOB_SECONDS, clock=time)
    app = EmulatorApp(
        default_size=32, capacity={"fal": capacity}, faults=FaultPlan([Fault.TRUNCATED])
    )
    with serve(app) as url:
        retry = Retry(3, sleep=time.sleep)
        async with FluxClient(fal(url), max_concurrency=1, max_retries=retry) as flux:
            with pytest.raises(TransportError):
                await flux.generate("a lost fox")
            assert time.now == pytest.approx(1.0)
            await flux.generate("a fox")
    assert app.load["fal"].refused == 0
