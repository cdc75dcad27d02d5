"""AdaptiveLimit growth: slow start, where latency ends it, when it goes on, idle callers."""

from __future__ import annotations

import pytest

from flux_sdk import AdaptiveLimit

from ._adaptive import Tick, _paced, _steady

pytestmark = pytest.mark.anyio


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
