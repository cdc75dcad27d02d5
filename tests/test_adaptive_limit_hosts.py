"""AdaptiveLimit against a simulated host: filled to the ceiling, near a small one, per route."""

from __future__ import annotations

import heapq
from typing import Any

import anyio
import anyio.lowlevel
import httpx
import pytest

from flux_sdk import (
    AdaptiveLimit,
    BatchProgress,
    Call,
    ConcurrencyLimit,
    ConfigError,
    Dataoorts,
    FluxClient,
    FluxEvent,
    Retry,
    Route,
)
from flux_sdk._policy._limits import CombinedLimit

from .test_middleware import OK_JSON

pytestmark = pytest.mark.anyio


# Time is virtual: the fake host below is a small discrete-event simulation that moves its
# clock to the next end of a service once every task is waiting, so a test runs in no real
# time and the same way every run, on asyncio and on trio.
class Host:
    """A host with ``replicas`` serving at once, each request for ``service`` seconds of
    virtual time, and a FIFO queue of ``queue`` places: beyond them, a 429 at once.

    ``run`` is the clock: once every task has stopped at the host, it moves time to the
    next end of a service and answers that request, until ``stop`` is set.
    """

    def __init__(self, replicas: int, queue: int, service: float = 0.1) -> None:
        self.replicas = replicas
        self.queue = queue
        self.service = service
        self.now = 0.0
        self.busy = 0
        self.peak = 0
        self.requests = 0
        self.refused = 0
        self.stop = False
        self.filled: float | None = None  # when every replica was first busy
        self._ends: list[tuple[float, int, anyio.Event]] = []
        self._queued: list[anyio.Event] = []
        self._seq = 0

    def clock(self) -> float:
        return self.now

    async def __call__(self, call: Call, call_next: Any) -> httpx.Response:
        self.requests += 1
        done = anyio.Event()
        if self.busy < self.replicas:
            self._start(done)
        elif len(self._queued) < self.queue:
            self._queued.append(done)
        else:
            self.refused += 1
            await anyio.lowlevel.checkpoint()
            return httpx.Response(429, headers={"retry-after": "0"}, json={"error": "busy"})
        self.peak = max(self.peak, self.busy + len(self._queued))
        await done.wait()
        return httpx.Response(200, json=OK_JSON)

    def _start(self, done: anyio.Event) -> None:
        self.busy += 1
        if self.busy == self.replicas and self.filled is None:
            self.filled = self.now
        self._seq += 1
        heapq.heappush(self._ends, (self.now + self.service, self._seq, done))

    async def run(self) -> None:
        while not self.stop:
            for _ in range(60):  # every other task runs until it waits
                await anyio.lowlevel.checkpoint()
            if not self._ends:
                continue
            self.now, _, done = heapq.heappop(self._ends)
            self.busy -= 1
            if self._queued:
                self._start(self._queued.pop(0))
            done.set()


def _client(host: Host, limit: ConcurrencyLimit | None = None, **kwargs: Any) -> FluxClient:
    return FluxClient(
        Dataoorts(api_key="sk-adaptive"),
        max_concurrency=limit,
        attempt_middleware=[host],
        max_retries=Retry(5, sleep=_no_wait),
        **kwargs,
    )


async def _no_wait(seconds: float) -> None:
    await anyio.lowlevel.checkpoint()


async def _batch(
    client: FluxClient, host: Host, count: int, *, errors: bool = False
) -> list[BatchProgress]:
    """A batch of ``count`` prompts against ``host``, its clock running meanwhile."""
    seen: list[BatchProgress] = []
    results: list[Any] = []
    host.stop = False

    async def batch() -> None:
        results.extend(
            await client.generate_many([f"p {i}" for i in range(count)], on_progress=seen.append)
        )
        host.stop = True

    async with anyio.create_task_group() as group:
        group.start_soon(host.run)
        group.start_soon(batch)
    assert len(results) == count
    assert errors or not any(isinstance(r, Exception) for r in results)
    return seen


async def test_the_default_client_limit_is_adaptive_and_a_number_is_fixed() -> None:
    async with FluxClient(Dataoorts(api_key="sk-a")) as client:
        assert isinstance(client.concurrency, AdaptiveLimit)
        assert (client.concurrency.limit, client.concurrency.ceiling) == (16, 256)
    async with FluxClient(Dataoorts(api_key="sk-a"), max_concurrency=16) as client:
        assert type(client.concurrency) is ConcurrencyLimit
        assert (client.concurrency.limit, client.concurrency.ceiling) == (16, 16)
    own = AdaptiveLimit(max=64, start=4)
    async with FluxClient(Dataoorts(api_key="sk-a"), max_concurrency=own) as client:
        assert client.concurrency is own
        assert (own.limit, own.ceiling, own.in_flight) == (4, 64, 0)


async def test_a_big_host_is_filled_up_to_the_ceiling_without_a_429() -> None:
    host = Host(replicas=64, queue=16)
    limit = AdaptiveLimit(max=48, start=2, clock=host.clock)
    async with _client(host, limit) as client:
        seen = await _batch(client, host, 600)
    assert host.refused == 0
    assert host.peak == 48  # slow start reached the ceiling, never above it
    assert seen[-1].concurrency == 48
    assert seen[0].concurrency is not None
    assert seen[0].concurrency < 48


async def test_a_small_host_gets_about_its_replicas_and_few_429s() -> None:
    """Started far above what the host holds: a few refusals, then latency keeps the
    limit between the replicas and the queue's end."""
    host = Host(replicas=4, queue=4)
    limit = AdaptiveLimit(clock=host.clock)  # starts at 16: four times the replicas
    async with _client(host, limit) as client:
        seen = await _batch(client, host, 1000)
    assert host.refused < 0.02 * 1000
    tail = {p.concurrency or 0 for p in seen[-500:]}
    assert min(tail) >= 4, tail
    assert max(tail) <= 8, tail


async def test_a_fixed_limit_against_the_small_host_keeps_being_refused() -> None:
    """The contrast the adaptive limit is for: 16 in flight at a host that holds 8."""
    host = Host(replicas=4, queue=4)
    async with _client(host, ConcurrencyLimit(16)) as client:
        await _batch(client, host, 200, errors=True)
    assert host.refused > 0.5 * 200


async def test_a_big_host_is_filled_in_fewer_round_trips_with_few_429s() -> None:
    host = Host(replicas=192, queue=48)
    limit = AdaptiveLimit(clock=host.clock)
    async with _client(host, limit) as client:
        await _batch(client, host, 3000)
    assert host.filled is not None
    assert host.filled < 0.35, host.filled  # three service times: doubling took four
    assert host.refused < 0.02 * 3000


async def test_events_carry_the_limit_of_each_attempt() -> None:
    events: list[FluxEvent] = []
    host = Host(replicas=64, queue=0)
    limit = AdaptiveLimit(max=32, start=4, clock=host.clock)
    async with _client(host, limit, on_event=events.append) as client:
        await _batch(client, host, 100)
    values = [e.concurrency for e in events if e.kind == "attempt"]
    assert values[0] == 4
    assert max(v for v in values if v is not None) == 32

    async def answer(call: Call, call_next: Any) -> httpx.Response:
        return httpx.Response(200, json=OK_JSON)

    events.clear()
    async with FluxClient(
        Dataoorts(api_key="sk-a"),
        max_concurrency=5,
        attempt_middleware=[answer],
        on_event=events.append,
    ) as fixed:
        await fixed.generate("one")
    assert [e.concurrency for e in events if e.kind == "attempt"] == [5]


async def test_each_route_gets_its_own_adaptive_limit_and_a_batch_can_use_both() -> None:
    one, two = Dataoorts(api_key="sk-1"), Dataoorts(api_key="sk-2")
    two.name = "dataoorts-2"
    async with FluxClient([one, two]) as client:
        parts = [live.concurrency for live in client._router.routes]  # type: ignore[union-attr]
        assert all(isinstance(p, AdaptiveLimit) for p in parts)
        assert parts[0] is not parts[1]
        assert isinstance(client.concurrency, CombinedLimit)
        assert (client.concurrency.limit, client.concurrency.ceiling) == (32, 512)
    shared = AdaptiveLimit(max=20)
    async with FluxClient([Route(one, max_concurrency=shared), two]) as client:
        assert client.concurrency.ceiling == 20 + 256


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max": 0},
        {"min": 0},
        {"min": 5, "max": 4},
        {"start": 300},
        {"max": 8, "start": 9},
        {"backoff": 1.0},
        {"backoff": 0.0},
        {"backoff": "x"},
        {"max": 2.5},
        {"clock": 3},
    ],
)
async def test_bad_settings_are_config_errors(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match="AdaptiveLimit"):
        AdaptiveLimit(**kwargs)
