"""AdaptiveLimit on 429s: cut once a round trip, halved for a burst, kept below for a while."""

from __future__ import annotations

import pytest

from flux_sdk import AdaptiveLimit

from ._adaptive import Tick, _paced, _steady

pytestmark = pytest.mark.anyio


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
