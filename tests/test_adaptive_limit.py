"""AdaptiveLimit: grows while the host keeps up, falls on 429s and on queueing.

Time is virtual: the fake host below is a small discrete-event simulation that moves its
clock to the next end of a service once every task is waiting, so a test runs in no real
time and the same way every run, on asyncio and on trio.
"""

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
from flux_sdk._transport._timing import HOST_TIME

from .test_middleware import OK_JSON

pytestmark = pytest.mark.anyio


class Tick:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


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


async def test_a_429_cuts_to_backoff_times_what_is_in_flight_once_per_round_trip() -> None:
    tick = Tick()
    limit = AdaptiveLimit(max=100, start=40, clock=tick)
    await _steady(limit, 40, latency=0.1)  # one window: it learns the round trip
    assert limit.limit == 80  # slow start: one more slot per answer with every slot busy
    for _ in range(30):
        await limit.acquire()
    limit.on_refused()  # 30 in flight: 0.9 x 30
    assert limit.limit == 27
    limit.on_refused()  # the same round trip: no second cut, only below what is in flight
    assert limit.limit == 27
    for _ in range(30):
        limit.release()
    tick.now += 0.2  # a round trip later, a refusal cuts again
    for _ in range(20):
        await limit.acquire()
    limit.on_refused()
    assert limit.limit == 18
    for _ in range(20):
        limit.release()


async def _steady(limit: AdaptiveLimit, answers: int, latency: float, busy: int = 0) -> None:
    """``answers`` answers after ``latency`` each, from a caller that keeps ``busy``
    requests in flight (every slot when 0), as a batch does."""
    for _ in range(answers):
        while limit.in_flight < (busy or limit.limit):
            await limit.acquire()
        limit.on_answer(latency)
        limit.release()
    while limit.in_flight:
        limit.release()


async def test_rising_latency_ends_slow_start_at_what_the_host_serves_then_cuts() -> None:
    tick = Tick()
    limit = AdaptiveLimit(max=1000, start=10, clock=tick)
    await _steady(limit, 10, latency=0.1)  # slow start: every answer adds a slot
    assert limit.limit == 20
    # 30% slower: requests wait. Slow start pauses within a few answers (the latest
    # answers' mean over 1.2x the base) and ends with the window: of the ~29 then in
    # flight about 29 x 0.1 / 0.128 (that mean) are served, and the limit is that x 1.2.
    await _steady(limit, 20, latency=0.13)
    assert limit.limit == 26
    await _steady(limit, 26, latency=0.13)  # still queueing: hold
    assert limit.limit == 26
    await _steady(limit, 26, latency=0.2)  # twice as slow: cut by the backoff
    assert limit.limit == 23
    await _steady(limit, 23, latency=0.1)  # back to normal: one more, and no 429 came,
    assert limit.limit == 24
    await _steady(limit, 24, latency=0.1)  # so slow start goes on (see the next tests)
    assert limit.limit == 48


async def test_slower_answers_to_a_few_calls_at_a_time_keep_the_limit() -> None:
    """An app making one call at a time, whose host gets slower for a while, did not
    make the host queue: the limit stays near where it was, one backoff step at most
    (cutting it to the one call in flight would leave a later burst one slot, and a
    router would take the host for a small one)."""
    limit = AdaptiveLimit(max=1000, start=16, clock=Tick())
    await _steady(limit, 16, latency=0.1, busy=1)
    await _steady(limit, 32, latency=0.3, busy=1)
    assert limit.limit >= int(16 * limit.backoff)


async def test_slow_start_stops_growing_while_answers_come_back_slow() -> None:
    """A window is judged a round trip late; meanwhile requests held up inside a busy
    client (or queued at the host) show in each answer's time at once. Growing then
    would only lengthen that line, which reaches the host as one burst of 429s."""
    limit = AdaptiveLimit(max=1000, start=16, clock=Tick())
    await _steady(limit, 16, latency=0.1)  # one window at the base: 16 -> 32
    assert limit.limit == 32
    await _steady(limit, 8, latency=0.4)  # the latest answers four times slower
    grown = limit.limit
    assert grown < 32 + 8  # growth stopped within these eight answers
    await _steady(limit, 8, latency=0.4)
    assert limit.limit == grown  # and stays stopped while they are slow


async def test_slow_start_ends_at_what_a_busy_client_gets_served() -> None:
    """Answers twice as slow as the base with 64 in flight: about 32 are being served,
    the rest wait in a line (at the host or inside the client). Slow start ends near
    32 x 1.2 rather than holding 64, so the line cannot reach the host all at once."""
    limit = AdaptiveLimit(max=1000, start=16, clock=Tick())
    await _steady(limit, 16, latency=0.1)
    await _steady(limit, 32, latency=0.1)
    assert limit.limit == 64
    await _steady(limit, 64, latency=0.2)
    assert 32 <= limit.limit <= 44, limit.limit


async def test_slow_start_goes_on_once_latency_is_normal_again_unless_refused() -> None:
    """Slow answers from a client short of CPU for a while end slow start low; once
    answers are back to the base, it goes on doubling, until a 429 shows the host's
    own limit."""
    limit = AdaptiveLimit(max=1000, start=16, clock=Tick())
    await _steady(limit, 16, latency=0.1)
    await _steady(limit, 32, latency=0.1)
    await _steady(limit, 64, latency=0.2)  # slow: slow start ends at about 38
    low = limit.limit
    await _steady(limit, low, latency=0.1)  # normal again: one window, then doubling
    await _steady(limit, low + 1, latency=0.1)
    assert limit.limit >= 2 * low
    for _ in range(limit.limit):
        await limit.acquire()
    limit.on_refused()  # the host's own limit: growth is additive from here
    while limit.in_flight:
        limit.release()
    refused = limit.limit
    await _steady(limit, 3 * refused, latency=0.1)
    assert refused < limit.limit <= refused + 3


async def _paced(limit: AdaptiveLimit, tick: Tick, answers: int, latency: float) -> list[int]:
    """`_steady` with every slot busy and the clock moving as from a host: the answers of
    one round trip spread over ``latency``. Returns the limit after each answer."""
    seen = []
    for _ in range(answers):
        while limit.in_flight < limit.limit:
            await limit.acquire()
        tick.now += latency / limit.limit
        limit.on_answer(latency)
        limit.release()
        seen.append(limit.limit)
    while limit.in_flight:
        limit.release()
    return seen


async def test_slow_start_adds_two_slots_an_answer_after_half_a_round_trip_at_the_base() -> None:
    """Doubling takes log2(replicas / 16) round trips to fill a big host, most of them
    with few replicas busy; once answers have kept up for half a round trip, the limit
    triples a round trip instead."""
    tick = Tick()
    limit = AdaptiveLimit(max=1000, start=16, clock=tick)
    seen = await _paced(limit, tick, 16, latency=0.1)
    steps = [b - a for a, b in zip([16, *seen], seen, strict=False)]
    assert steps[:4] == [1, 1, 1, 1]  # the first answers of a round trip: one each
    assert steps[-4:] == [2, 2, 2, 2]  # half a round trip on: two each
    assert limit.limit > 32


async def test_slow_start_adds_one_slot_again_after_latency_ends_it() -> None:
    """Slow answers (a host queueing, a client short of CPU) end slow start; when it goes
    on, it adds one slot an answer again until half a round trip at the base has passed."""
    tick = Tick()
    limit = AdaptiveLimit(max=1000, start=16, clock=tick)
    await _paced(limit, tick, 16, latency=0.1)
    await _paced(limit, tick, limit.limit, latency=0.2)  # slow: slow start ends low
    low = limit.limit
    await _paced(limit, tick, low, latency=0.1)  # normal again: one window, slow start on
    again = limit.limit
    seen = await _paced(limit, tick, 4, latency=0.1)
    assert [b - a for a, b in zip([again, *seen], seen, strict=False)] == [1, 1, 1, 1]


async def test_a_caller_using_few_slots_for_a_window_starts_the_while_again() -> None:
    """Two slots an answer are for a limit kept up with while every slot was in use; a
    caller that needed few for a while says nothing of how far the host keeps up."""
    tick = Tick()
    limit = AdaptiveLimit(max=1000, start=16, clock=tick)
    await _paced(limit, tick, 16, latency=0.1)  # two slots an answer by now
    await _steady(limit, 3 * limit.limit, latency=0.1, busy=3)
    grown = limit.limit
    seen = await _paced(limit, tick, 4, latency=0.1)
    assert [b - a for a, b in zip([grown, *seen], seen, strict=False)] == [1, 1, 1, 1]


async def test_after_a_refusal_slow_start_adds_one_slot_an_answer() -> None:
    """A host refusing the start is small: slow start goes on from the halved limit at one
    slot an answer, however long its answers keep up, so the next overshoot of its queue
    is no bigger than doubling makes it."""
    tick = Tick()
    limit = AdaptiveLimit(max=1000, start=16, clock=tick)
    for _ in range(16):
        await limit.acquire()
    limit.on_refused()  # the start itself was refused: half what the host holds
    while limit.in_flight:
        limit.release()
    assert limit.limit == 7
    seen = await _paced(limit, tick, 7 + 8, latency=0.1)  # one and a half round trips
    steps = [b - a for a, b in zip([7, *seen], seen, strict=False)]
    assert max(steps) == 1, steps  # (and none past 15, one below the 16 refused)


async def test_refusals_of_one_burst_before_a_window_halve_what_the_host_holds() -> None:
    """Refused before the first window ended: the limit goes to half what the host still
    holds, once for the burst. Halving again at each refusal of one burst took a host
    of 12 replicas, 20 ms away, down to one slot."""
    tick = Tick()
    limit = AdaptiveLimit(max=1000, start=16, clock=tick)
    await _paced(limit, tick, 8, latency=0.1)  # grown past the start, no window yet
    grown = limit.limit
    assert grown > 16
    for _ in range(grown):
        await limit.acquire()
    for _ in range(5):  # five refusals at once
        limit.on_refused()
        limit.release()
    assert limit.limit == (grown - 5) // 2, (grown, limit.limit)
    while limit.in_flight:
        limit.release()


async def test_after_a_429_the_limit_stays_below_what_was_refused_for_a_while() -> None:
    """A refused request waits out its Retry-After holding its batch item and comes back
    as the one request over what the host holds: if additive increase has climbed back
    there by then, the same item is refused at each try and lost."""
    tick = Tick()
    limit = AdaptiveLimit(max=1000, start=16, clock=tick)
    await _paced(limit, tick, 16, latency=0.1)  # one window: the base is known
    for _ in range(20):
        await limit.acquire()
    limit.on_refused()  # 20 in flight were too many: 0.9 x 20
    while limit.in_flight:
        limit.release()
    assert limit.limit == 18
    seen = await _paced(limit, tick, 6 * 18, latency=0.1)  # six windows of normal latency
    assert max(seen) == 19  # one below what was refused, not 18 + 6
    await _paced(limit, tick, 4 * 19, latency=0.1)  # eight windows on, it probes again
    assert limit.limit > 19


async def test_a_big_host_is_filled_in_fewer_round_trips_with_few_429s() -> None:
    host = Host(replicas=192, queue=48)
    limit = AdaptiveLimit(clock=host.clock)
    async with _client(host, limit) as client:
        await _batch(client, host, 3000)
    assert host.filled is not None
    assert host.filled < 0.35, host.filled  # three service times: doubling took four
    assert host.refused < 0.02 * 3000


async def test_it_does_not_grow_while_the_caller_uses_few_slots() -> None:
    tick = Tick()
    limit = AdaptiveLimit(max=64, start=8, clock=tick)
    await _steady(limit, 100, latency=0.1, busy=3)
    assert limit.limit == 8
    await _steady(limit, 8, latency=0.1)  # now every slot is busy: slow start goes on
    assert limit.limit == 16


async def test_slow_start_counts_a_limit_as_used_with_an_eighth_of_it_free() -> None:
    """At hundreds of answers a second a batch's next request has not always taken the
    freed slot when the next answer comes: with 15 of 16 busy, slow start still grows."""
    limit = AdaptiveLimit(max=256, start=16, clock=Tick())

    async def answers(count: int, free: int) -> None:
        for _ in range(count):  # a caller that keeps all but ``free`` slots busy
            while limit.in_flight < limit.limit - free:
                await limit.acquire()
            limit.on_answer(0.1)
            limit.release()
        while limit.in_flight:
            limit.release()

    await answers(16, free=1)
    assert limit.limit == 32  # doubled in one round trip, as with every slot busy
    await answers(16, free=8)  # a quarter free: a caller that needs fewer, no growth
    assert limit.limit == 32


def _timed_call() -> Call:
    call = Call.__new__(Call)  # only the fields AdaptiveLimit reads
    call.step = None
    call.concurrency = None
    return call


async def test_latency_is_the_hosts_time_from_the_write_to_the_answer() -> None:
    """Where the connection records the host's time (``HOST_TIME``), the time before the
    request was written (the client's own work) is not taken for the host queueing:
    only the host's part is judged. Here the slots are held for no time at all."""
    host_time = 0.1
    limit = AdaptiveLimit(max=1000, start=10, clock=Tick())  # never moves

    async def answer(call: Call) -> httpx.Response:
        response = httpx.Response(200, json=OK_JSON)
        response.extensions[HOST_TIME] = (100.0, 100.0 + host_time)
        return response

    async def answers(count: int) -> None:
        async with anyio.create_task_group() as group:
            for _ in range(count):
                group.start_soon(limit, _timed_call(), answer)

    await answers(10)  # a first window: the base is the host's 0.1 s
    grown = limit.limit
    host_time = 0.3  # the host three times slower: it queues
    for _ in range(3):
        await answers(grown)
    assert limit.limit < grown  # cut, though no slot was held for any time


async def test_without_the_hosts_time_the_slot_time_is_the_latency() -> None:
    """A connection that cannot tell (httpx's today) leaves ``HOST_TIME`` out: the time
    from taking the slot to the answer is judged instead."""
    tick = Tick()
    limit = AdaptiveLimit(max=1000, start=10, clock=tick)
    service = 0.1

    async def answer(call: Call) -> httpx.Response:
        tick.now += service  # one answer at a time: each holds its slot for ``service``
        return httpx.Response(200, json=OK_JSON)

    for _ in range(10):
        await limit(_timed_call(), answer)
    grown = limit.limit
    service = 0.3
    for _ in range(3 * grown):
        await limit(_timed_call(), answer)
    assert limit.limit < grown


async def test_waiters_are_served_in_order_as_the_limit_moves() -> None:
    tick = Tick()
    limit = AdaptiveLimit(max=8, start=1, clock=tick)
    order: list[int] = []
    await limit.acquire()
    async with anyio.create_task_group() as group:
        for i in range(4):
            group.start_soon(_take, limit, i, order)
            await anyio.lowlevel.checkpoint()
        await _settle()
        assert order == []
        limit.limit = 3  # two more slots: the first two waiters get them
        await _settle()
        assert sorted(order) == [0, 1]
        assert limit.in_flight == 3
        limit.release()  # the first holder leaves: the next waiter goes
        await _settle()
        assert sorted(order[:2]) == [0, 1]
        assert order[2] == 2
        limit.limit = 1  # shrinking takes nothing back; the last waiter waits
        limit.release()
        limit.release()
        await _settle()
        assert len(order) == 3
        assert limit.in_flight == 1
        limit.release()
        await _settle()
        assert order[2:] == [2, 3]
        limit.release()
    assert limit.in_flight == 0


async def _take(limit: AdaptiveLimit, i: int, order: list[int]) -> None:
    await limit.acquire()
    order.append(i)


async def _settle() -> None:
    for _ in range(5):
        await anyio.lowlevel.checkpoint()


async def test_a_cancelled_waiter_leaves_no_slot_behind() -> None:
    tick = Tick()
    limit = AdaptiveLimit(max=4, start=1, clock=tick)
    await limit.acquire()
    with anyio.move_on_after(0.01):  # real time, but only a bound: it is always hit
        await limit.acquire()
    assert limit.in_flight == 1
    # Handed a slot and cancelled in the same moment: the slot goes to the next waiter.
    async with anyio.create_task_group() as group:
        scope = anyio.CancelScope()

        async def cancelled() -> None:
            with scope:
                await limit.acquire()
                limit.release()  # through after all: it hands the slot straight on

        group.start_soon(cancelled)
        await _settle()
        got: list[int] = []
        group.start_soon(_take, limit, 7, got)
        await _settle()
        limit.release()  # hands the slot to the first waiter ...
        scope.cancel()  # ... which is cancelled before it runs
        await _settle()
        assert got == [7]
        assert limit.in_flight == 1
        limit.release()
    assert limit.in_flight == 0


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
