"""Capacity in process, on a clock the test moves: replicas, the queue, 429s, service times."""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio
import httpx
import pytest

from flux_sdk.emulator import DEFAULT_API_KEY, Capacity, EmulatorApp, Fault, FaultPlan, Sample
from flux_sdk.emulator._app import HOSTS
from flux_sdk.emulator._capacity import ServiceTimes

pytestmark = pytest.mark.anyio

BEARER = {"Authorization": f"Bearer {DEFAULT_API_KEY}"}


@dataclass(frozen=True)
class Call:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


CALLS = {
    "dataoorts": Call(
        "/api/v1",
        BEARER,
        {"model": "black-forest-labs/flux-1-schnell", "data": {"prompt": "a red fox"}},
    ),
    "baseten": Call(
        "/production/predict", {"Authorization": f"Api-Key {DEFAULT_API_KEY}"}, {"prompt": "a fox"}
    ),
    "openai": Call("/v1/images/generations", BEARER, {"prompt": "a red fox", "size": "64x64"}),
    "together": Call(
        "/together/v1/images/generations",
        BEARER,
        {"model": "black-forest-labs/FLUX.1-schnell", "prompt": "a fox", "width": 64, "height": 64},
    ),
}
# Where each host's 429 says how long to wait: Together sends no Retry-After.
WAIT_HEADER = {"together": "x-ratelimit-reset"}


class FakeTime:
    """A clock that moves only when the test advances it; sleepers wake as it passes them."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []
        self._sleepers: list[tuple[float, anyio.Event]] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        wake = anyio.Event()
        self._sleepers.append((self.now + seconds, wake))
        await wake.wait()

    async def advance(self, seconds: float) -> None:
        """Move on, wake whoever is due, and let every task run until it blocks again."""
        self.now += seconds
        due = [entry for entry in self._sleepers if entry[0] <= self.now + 1e-9]
        for entry in due:
            self._sleepers.remove(entry)
            entry[1].set()
        await anyio.wait_all_tasks_blocked()


def app_with(fake: FakeTime, **options: Any) -> EmulatorApp:
    capacity = Capacity(sleep=fake.sleep, clock=fake.clock, **options)
    return EmulatorApp(default_size=32, capacity=capacity)


def client(app: EmulatorApp) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://emulator")


class Requests:
    """Requests started one at a time in arrival order; each keeps its response and when
    (on the fake clock) it arrived."""

    def __init__(self, http: httpx.AsyncClient, group: anyio.abc.TaskGroup, fake: FakeTime):
        self.http, self.group, self.fake = http, group, fake
        self.responses: dict[int, httpx.Response] = {}
        self.ended: dict[int, float] = {}
        self.pending: set[int] = set()

    async def start(self, count: int, call: Call = CALLS["dataoorts"]) -> None:
        for _ in range(count):
            index = len(self.responses) + len(self.pending)
            self.pending.add(index)
            self.group.start_soon(self._one, index, call)
            await anyio.wait_all_tasks_blocked()  # it has arrived before the next one

    async def _one(self, index: int, call: Call) -> None:
        response = await self.http.post(call.path, headers=call.headers, json=call.body)
        self.pending.discard(index)
        self.responses[index] = response
        self.ended[index] = self.fake.now


Body = Callable[[Requests], Awaitable[None]]


async def run(app: EmulatorApp, fake: FakeTime, body: Body) -> None:
    async with client(app) as http, anyio.create_task_group() as group:
        await body(Requests(http, group, fake))


async def test_at_most_replicas_in_service_then_a_bounded_queue_then_429() -> None:
    fake = FakeTime()
    app = app_with(fake, replicas=2, queue=2, retry_after=0.25)
    load = app.load["dataoorts"]

    async def body(requests: Requests) -> None:
        await requests.start(6)
        assert (load.in_service, load.queued, load.refused) == (2, 2, 2)
        assert sorted(requests.responses) == [4, 5]  # the last two, refused at once
        for index in (4, 5):
            assert requests.responses[index].status_code == 429
            assert requests.responses[index].headers["retry-after"] == "0.25"
        await fake.advance(1.0)
        assert sorted(requests.ended) == [0, 1, 4, 5]
        assert (load.in_service, load.queued) == (2, 0)
        await fake.advance(1.0)
        assert requests.ended == {0: 1.0, 1: 1.0, 2: 2.0, 3: 2.0, 4: 0.0, 5: 0.0}
        assert all(requests.responses[i].status_code == 200 for i in range(4))

    await run(app, fake, body)
    assert (load.requests, load.served, load.refused) == (6, 4, 2)
    assert (load.max_in_service, load.max_queued, load.in_service, load.queued) == (2, 2, 0, 0)
    assert max(sample.in_service for sample in load.timeline) == 2
    assert load.timeline[0] == Sample(0.0, 1, 0)
    assert load.timeline[-1] == Sample(2.0, 0, 0)


async def test_no_queue_by_default_the_second_request_is_refused() -> None:
    fake = FakeTime()
    app = app_with(fake, replicas=1)

    async def body(requests: Requests) -> None:
        await requests.start(2)
        assert requests.responses[1].status_code == 429
        await fake.advance(1.0)
        assert requests.responses[0].status_code == 200

    await run(app, fake, body)
    assert app.load["dataoorts"].max_queued == 0


async def test_overflow_queue_refuses_nothing_and_latency_grows_in_arrival_order() -> None:
    fake = FakeTime()
    app = app_with(fake, replicas=1, queue=1, overflow="queue")
    load = app.load["dataoorts"]

    async def body(requests: Requests) -> None:
        await requests.start(5)
        assert (load.in_service, load.queued, load.max_queued) == (1, 4, 4)
        for _ in range(5):
            await fake.advance(1.0)
        assert requests.ended == {0: 1.0, 1: 2.0, 2: 3.0, 3: 4.0, 4: 5.0}
        assert all(r.status_code == 200 for r in requests.responses.values())

    await run(app, fake, body)
    assert (load.refused, load.served, load.max_in_service) == (0, 5, 1)


@pytest.mark.parametrize("host", list(CALLS))
async def test_the_429_is_the_hosts_own_with_its_wait(host: str) -> None:
    fake = FakeTime()
    app = app_with(fake, replicas=1, retry_after=0.25)
    call = CALLS[host]

    async def body(requests: Requests) -> None:
        await requests.start(2, call)
        refused = requests.responses[1]
        assert refused.status_code == 429
        assert refused.headers[WAIT_HEADER.get(host, "retry-after")] == "0.25"
        assert refused.headers["x-request-id"] == "emu-000002"
        # Byte for byte what the host's own rate-limit answer is.
        faulty = EmulatorApp(faults=FaultPlan([Fault.RATE_LIMIT], retry_after=0.25))
        async with client(faulty) as http:
            expected = await http.post(call.path, headers=call.headers, json=call.body)
        assert refused.content == expected.content
        ours, theirs = dict(refused.headers), dict(expected.headers)
        for varies in ("x-request-id", "x-baseten-request-id"):
            ours.pop(varies, None)
            theirs.pop(varies, None)
        assert ours == theirs
        await fake.advance(1.0)

    await run(app, fake, body)
    assert app.load[host].refused == 1


async def test_the_429_shapes_are_the_documented_ones() -> None:
    fake = FakeTime()
    app = app_with(fake, replicas=1)
    bodies = {}

    async def body(requests: Requests) -> None:
        for number, (host, call) in enumerate(CALLS.items()):
            await requests.start(2, call)
            bodies[host] = requests.responses[2 * number + 1].json()
        await fake.advance(1.0)

    await run(app, fake, body)
    assert bodies["dataoorts"]["success"] is False
    assert bodies["dataoorts"]["errors"][0]["code"] == 3040
    assert bodies["openai"]["error"]["code"] == "rate_limit_exceeded"
    assert set(bodies["baseten"]) == {"error"}
    assert bodies["together"]["error"]["type"] == "dynamic_request_limited"


async def test_each_host_has_its_own_replicas_and_a_mapping_limits_only_those_named() -> None:
    fake = FakeTime()
    shared = app_with(fake, replicas=1)
    assert set(shared.load) == {host.name for host in HOSTS}

    async def body(requests: Requests) -> None:
        await requests.start(1, CALLS["dataoorts"])
        await requests.start(1, CALLS["openai"])  # another host: not queued behind it
        assert shared.load["openai"].in_service == shared.load["dataoorts"].in_service == 1
        await fake.advance(1.0)

    await run(shared, fake, body)

    fake = FakeTime()
    limits = {"dataoorts": Capacity(replicas=1, sleep=fake.sleep, clock=fake.clock)}
    mapped = EmulatorApp(default_size=32, capacity=limits)
    assert set(mapped.load) == {"dataoorts"}

    async def body2(requests: Requests) -> None:
        await requests.start(2, CALLS["dataoorts"])
        await requests.start(3, CALLS["baseten"])  # no limits: answered at once
        assert [requests.responses[i].status_code for i in (1, 2, 3, 4)] == [429, 200, 200, 200]
        assert fake.slept == [1.0]
        await fake.advance(1.0)

    await run(mapped, fake, body2)


async def test_a_request_cancelled_in_the_queue_leaves_it() -> None:
    fake = FakeTime()
    app = app_with(fake, replicas=1, queue=1)
    load = app.load["dataoorts"]
    async with client(app) as http, anyio.create_task_group() as group:
        call = CALLS["dataoorts"]
        group.start_soon(lambda: http.post(call.path, headers=call.headers, json=call.body))
        await anyio.wait_all_tasks_blocked()
        scope, gone = anyio.CancelScope(), anyio.Event()

        async def queued() -> None:
            with scope:
                await http.post(call.path, headers=call.headers, json=call.body)
            gone.set()

        group.start_soon(queued)
        await anyio.wait_all_tasks_blocked()
        assert load.queued == 1
        scope.cancel()
        await gone.wait()
        assert load.queued == 0
        third = Requests(http, group, fake)
        await third.start(1, call)
        assert (load.queued, load.refused) == (1, 0)  # its place was free
        await fake.advance(1.0)
        await fake.advance(1.0)
        assert third.responses[0].status_code == 200
    assert (load.served, load.abandoned, load.in_service) == (2, 0, 0)


async def sequential_service_times(capacity: Capacity, count: int) -> list[float]:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    app = EmulatorApp(
        default_size=32, capacity={"dataoorts": dataclasses.replace(capacity, sleep=sleep)}
    )
    call = CALLS["dataoorts"]
    async with client(app) as http:
        for _ in range(count):
            response = await http.post(call.path, headers=call.headers, json=call.body)
            assert response.status_code == 200
    return slept


async def test_service_times_are_replayed_from_the_seed() -> None:
    capacity = Capacity(median=0.5, spread=0.8, tail=0.2, tail_factor=10.0, seed=7)
    first = await sequential_service_times(capacity, 40)
    assert first == await sequential_service_times(capacity, 40)
    times = ServiceTimes(capacity)
    assert first == [times.draw() for _ in range(40)]
    assert first != await sequential_service_times(dataclasses.replace(capacity, seed=8), 40)
    assert len(set(first)) == 40  # a spread: no two alike
    flat = await sequential_service_times(Capacity(median=0.25), 5)
    assert flat == [0.25] * 5


def test_the_distribution_has_the_median_spread_and_tail_asked_for() -> None:
    times = ServiceTimes(Capacity(median=2.0, spread=0.5, seed=1))
    draws = [times.draw() for _ in range(4001)]
    assert statistics.median(draws) == pytest.approx(2.0, rel=0.05)
    within_one_sigma = sum(2.0 * math.exp(-0.5) <= t <= 2.0 * math.exp(0.5) for t in draws)
    assert within_one_sigma / len(draws) == pytest.approx(0.683, abs=0.03)
    tail = ServiceTimes(Capacity(median=1.0, tail=0.1, tail_factor=10.0, seed=1))
    draws = [tail.draw() for _ in range(4000)]
    assert set(draws) == {1.0, 10.0}
    assert draws.count(10.0) / len(draws) == pytest.approx(0.1, abs=0.02)


async def test_on_change_sees_each_sample_as_it_is_taken() -> None:
    fake = FakeTime()
    app = app_with(fake, replicas=1, queue=1)
    seen: list[Sample] = []
    app.load["dataoorts"].on_change = seen.append

    async def body(requests: Requests) -> None:
        await requests.start(2)
        await fake.advance(1.0)
        await fake.advance(1.0)

    await run(app, fake, body)
    assert seen == list(app.load["dataoorts"].timeline)
    assert [(s.in_service, s.queued) for s in seen] == [(1, 0), (1, 1), (1, 0), (0, 0)]
    assert [s.time for s in seen] == [0.0, 0.0, 1.0, 2.0]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"replicas": 0}, "replicas must be a whole number >= 1"),
        ({"replicas": True}, "replicas must be a whole number >= 1"),
        ({"queue": -1}, "queue must be a whole number >= 0"),
        ({"median": math.nan}, "median must be a finite number >= 0"),
        ({"spread": -0.1}, "spread must be a finite number >= 0"),
        ({"retry_after": math.inf}, "retry_after must be a finite number >= 0"),
        ({"tail": 1.5}, "tail must be a probability from 0 to 1"),
        ({"tail_factor": 0.5}, "tail_factor must be a finite number >= 1"),
        ({"overflow": "drop"}, "overflow must be '429' or 'queue'"),
    ],
)
def test_bad_capacities_are_refused_naming_the_field(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Capacity(**options)


def test_a_mapping_must_name_real_hosts_and_hold_capacities() -> None:
    with pytest.raises(ValueError, match=r"no host of the emulator: 'nohost'; its hosts are data"):
        EmulatorApp(capacity={"nohost": Capacity()})
    with pytest.raises(ValueError, match=r"capacity\['baseten'\] must be a Capacity"):
        EmulatorApp(capacity={"baseten": 4})  # type: ignore[dict-item]
    assert EmulatorApp().load == {}
