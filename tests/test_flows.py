"""Flows for paid queues: each request an attempt, waits outside the limits, retries
that never submit an accepted job twice, and a cancel when the caller gives up.

The provider is the queue-host example printed in docs/custom-providers.md.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import respx

from flux_sdk import (
    Call,
    CallNext,
    FluxClient,
    FluxEvent,
    GeneratedImage,
    ProviderError,
    RateLimit,
    RequestTimeout,
    Retry,
    ServerError,
    TransportError,
)

from ._images import image_bytes

pytestmark = pytest.mark.anyio

_EXAMPLE = Path(__file__).parent.parent / "docs" / "examples" / "queue_provider.py"
_spec = importlib.util.spec_from_file_location("queue_provider", _EXAMPLE)
assert _spec is not None
assert _spec.loader is not None
queue_provider = importlib.util.module_from_spec(_spec)
sys.modules["queue_provider"] = queue_provider
_spec.loader.exec_module(queue_provider)
QueueHost = queue_provider.QueueHost

BASE = "https://queue.example"
PNG = image_bytes(size=3)
JOB = {
    "id": "j-1",
    "status_url": f"{BASE}/jobs/j-1",
    "cancel_url": f"{BASE}/jobs/j-1/cancel",
}


def status(state: str, **more: Any) -> httpx.Response:
    return httpx.Response(200, json={"status": state, **more})


DONE = status("DONE", image_url="https://cdn.example/j-1.png")
IMAGE = httpx.Response(200, content=PNG, headers={"content-type": "image/png"})


class Clock:
    """The client's injected sleep: records every wait, returns at once."""

    def __init__(self) -> None:
        self.waits: list[float] = []
        self.busy_during_waits: list[int] = []
        self.client: FluxClient | None = None

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        if self.client is not None:
            self.busy_during_waits.append(self.client.concurrency.in_flight)
        await anyio.lowlevel.checkpoint()


@pytest.fixture
def router() -> Generator[respx.MockRouter, None, None]:
    with respx.mock(assert_all_called=False) as mock:
        yield mock


@pytest.fixture
def clock() -> Clock:
    return Clock()


def client(clock: Clock, *, retries: int = 3, **options: Any) -> FluxClient:
    flux = FluxClient(QueueHost(), max_retries=Retry(retries, sleep=clock), **options)
    clock.client = flux
    return flux


def host(
    router: respx.MockRouter,
    *,
    submit: list[Any] | None = None,
    polls: list[Any] | None = None,
    download: list[Any] | None = None,
) -> dict[str, respx.Route]:
    return {
        "submit": router.post(f"{BASE}/jobs").mock(
            side_effect=submit or [httpx.Response(200, json=JOB)]
        ),
        "poll": router.get(JOB["status_url"]).mock(side_effect=polls or [DONE]),
        "download": router.get("https://cdn.example/j-1.png").mock(side_effect=download or [IMAGE]),
        "cancel": router.post(JOB["cancel_url"]).respond(202),
    }


async def test_a_queue_job_runs_submit_waits_polls_and_download(
    router: respx.MockRouter, clock: Clock
) -> None:
    """The whole life of a job; every request is an attempt event, in order."""
    routes = host(router, polls=[status("QUEUED"), status("RUNNING"), DONE])
    events: list[FluxEvent] = []
    async with client(clock, on_event=events.append) as flux:
        image = await flux.generate("a lighthouse", seed=5)
    assert image.data == PNG
    assert [r.call_count for r in routes.values()] == [1, 3, 1, 0]
    assert json.loads(routes["submit"].calls.last.request.content) == {
        "prompt": "a lighthouse",
        "seed": 5,
    }
    attempts = [(e.attempt, e.step, e.status_code) for e in events if e.kind == "attempt"]
    assert attempts == [
        (1, "submit", 200),
        (2, "poll", 200),
        (3, "poll", 200),
        (4, "poll", 200),
        (5, "download", 200),
    ]
    assert image.attempts == 5
    assert [e.delay for e in events if e.kind == "wait"] == [0.5, 0.5, 0.5]
    assert clock.waits == [0.5, 0.5, 0.5]
    assert events[-1].kind == "success"


async def test_a_queue_job_holds_its_slot_through_its_waits(
    router: respx.MockRouter, clock: Clock
) -> None:
    """A queue host counts jobs: the slot the submit took is held between polls (and
    the polls, with every slot held, do not wait for another), then freed."""
    host(router, polls=[status("QUEUED"), DONE])
    async with client(clock, max_concurrency=1) as flux:
        await flux.generate("a lighthouse")
        assert flux.concurrency.in_flight == 0
    assert clock.busy_during_waits == [1, 1]


@pytest.mark.parametrize(
    "failure",
    [
        httpx.Response(503, json={"error": "busy"}),
        httpx.Response(429, headers={"retry-after": "1"}),
        httpx.ConnectError("refused"),
        httpx.ReadTimeout("slow"),
        httpx.Response(500),
    ],
    ids=["503", "429", "reset", "timeout", "500"],
)
async def test_a_failed_poll_is_retried_and_the_job_is_not_submitted_again(
    router: respx.MockRouter, clock: Clock, failure: Any
) -> None:
    """Status polls are idempotent: any transient failure is polled again."""
    routes = host(router, polls=[failure, failure, DONE])
    async with client(clock) as flux:
        image = await flux.generate("a lighthouse")
    assert image.data == PNG
    assert routes["submit"].call_count == 1
    assert routes["poll"].call_count == 3


async def test_a_failed_download_is_retried(router: respx.MockRouter, clock: Clock) -> None:
    """A download is idempotent too."""
    routes = host(router, download=[httpx.Response(502), httpx.ReadError("cut"), IMAGE])
    async with client(clock) as flux:
        await flux.generate("a lighthouse")
    assert (routes["submit"].call_count, routes["download"].call_count) == (1, 3)


@pytest.mark.parametrize(
    "refusal",
    [
        httpx.Response(503, json={"error": "draining"}),
        httpx.Response(429, json={"error": "slow down"}),
        httpx.Response(408),
        httpx.ConnectError("connection refused"),
    ],
    ids=["503", "429", "408", "connect"],
)
async def test_a_submit_the_host_refused_is_sent_again(
    router: respx.MockRouter, clock: Clock, refusal: Any
) -> None:
    """When the host proves it took no job, submitting again cannot pay twice."""
    routes = host(router, submit=[refusal, httpx.Response(200, json=JOB)])
    async with client(clock) as flux:
        await flux.generate("a lighthouse")
    assert routes["submit"].call_count == 2


@pytest.mark.parametrize(
    ("failure", "error"),
    [
        (httpx.Response(500, json={"error": "boom"}), ServerError),
        (httpx.Response(502), ServerError),
        (httpx.ReadTimeout("no answer"), TransportError),
        (httpx.RemoteProtocolError("cut mid-answer"), TransportError),
        (httpx.Response(200, text="<html>gateway</html>"), Exception),
    ],
    ids=["500", "502", "read-timeout", "cut", "not-json"],
)
async def test_a_submit_that_may_have_been_accepted_is_never_sent_twice(
    router: respx.MockRouter, clock: Clock, failure: Any, error: type[Exception]
) -> None:
    """An answer that does not prove a refusal may hide a queued, paid job."""
    routes = host(router, submit=[failure, httpx.Response(200, json=JOB)])
    async with client(clock) as flux:
        with pytest.raises(error):
            await flux.generate("a lighthouse")
    assert routes["submit"].call_count == 1


async def test_a_failed_job_is_not_submitted_again(router: respx.MockRouter, clock: Clock) -> None:
    """The host's own verdict on an accepted job ends the call."""
    routes = host(router, polls=[status("FAILED", error="NSFW")])
    async with client(clock) as flux:
        with pytest.raises(ProviderError, match="NSFW") as caught:
            await flux.generate("a lighthouse")
    assert routes["submit"].call_count == 1
    assert caught.value.attempts == 2
    assert routes["cancel"].call_count == 0


async def test_the_deadline_cancels_an_accepted_job_on_the_host(router: respx.MockRouter) -> None:
    """A job still running when the caller's deadline passes is cancelled, not left to bill."""
    routes = host(router, polls=[status("RUNNING")] * 1000)
    events: list[FluxEvent] = []
    async with FluxClient(QueueHost(), deadline=0.2, on_event=events.append) as flux:
        with pytest.raises(RequestTimeout, match="deadline"):
            await flux.generate("a lighthouse")
    assert routes["submit"].call_count == 1
    assert routes["cancel"].call_count == 1
    assert routes["cancel"].calls.last.request.headers["authorization"] == "Bearer sk-queue"
    assert [e.step for e in events if e.kind == "attempt"][-1] == "cancel"


async def test_a_cancelled_call_cancels_its_job(router: respx.MockRouter, clock: Clock) -> None:
    """Cancelling the caller's scope after the job was accepted cancels it on the host."""
    polled = anyio.Event()

    def poll(request: httpx.Request) -> httpx.Response:
        polled.set()
        return status("RUNNING")

    routes = host(router)
    routes["poll"].mock(side_effect=poll)
    async with client(clock) as flux, anyio.create_task_group() as group:

        async def run() -> None:
            await flux.generate("a lighthouse")

        group.start_soon(run)
        await polled.wait()
        group.cancel_scope.cancel()
    assert routes["cancel"].call_count == 1


async def test_a_job_cancelled_before_it_was_accepted_sends_no_cancel(
    router: respx.MockRouter, clock: Clock
) -> None:
    """Nothing to cancel when no job exists yet."""
    routes = host(router)

    async def hang(request: httpx.Request) -> httpx.Response:
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    routes["submit"].mock(side_effect=hang)
    async with client(clock) as flux:
        with anyio.move_on_after(0.05):
            await flux.generate("a lighthouse")
    assert routes["cancel"].call_count == 0


async def test_a_per_call_timeout_applies_to_every_request(
    router: respx.MockRouter, clock: Clock
) -> None:
    """timeout= on one call reaches the submit, the polls and the download."""
    routes = host(router, polls=[status("QUEUED"), DONE])
    async with client(clock) as flux:
        await flux.generate("a lighthouse", timeout=7.5)
    sent = [call.request for route in routes.values() for call in route.calls]
    assert len(sent) == 4
    assert all(r.extensions["timeout"]["read"] == 7.5 for r in sent)


async def test_every_request_of_a_flow_takes_a_rate_slot(
    router: respx.MockRouter, clock: Clock
) -> None:
    """The rate limit spaces each request of a flow, not just the first."""
    host(router, polls=[status("QUEUED"), DONE])
    reserved: list[float] = []
    limit = RateLimit(1000.0, clock=lambda: 0.0, sleep=clock)
    limit._reserve = _spy(limit._reserve, reserved)  # type: ignore[method-assign]
    async with client(clock, rate_limit=limit) as flux:
        await flux.generate("a lighthouse")
    assert len(reserved) == 4  # submit, two polls, download


def _spy(reserve: Callable[[], tuple[float, float]], seen: list[float]) -> Any:
    def spy() -> tuple[float, float]:
        wait, interval = reserve()
        seen.append(wait)
        return wait, interval

    return spy


async def test_attempts_agree_when_a_middleware_calls_twice(
    router: respx.MockRouter, clock: Clock
) -> None:
    """One counter: events and the image say the same number of attempts."""
    routes = host(
        router,
        submit=[httpx.Response(200, json=JOB)] * 2,
        polls=[DONE, DONE],
        download=[IMAGE, IMAGE],
    )
    events: list[FluxEvent] = []

    async def twice(call: Call, call_next: CallNext) -> GeneratedImage:
        await call_next(call)
        return await call_next(call)

    async with client(clock, middleware=[twice], on_event=events.append) as flux:
        image = await flux.generate("a lighthouse")
    attempts = [e.attempt for e in events if e.kind == "attempt"]
    assert attempts == [1, 2, 3, 4, 5, 6]
    assert image.attempts == 6
    assert routes["submit"].call_count == 2
