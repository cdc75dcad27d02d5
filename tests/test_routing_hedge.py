"""Hedge(): the delay is worked out per route (early on a heavy tail, late without one,
never earlier than the budget affords), and an answer given up on because a hedge won
counts as slow, for the next delay and for balancing."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Generator

import anyio
import httpx
import pytest
import respx

from flux_sdk import ConfigError, FluxClient, Hedge, Route
from flux_sdk._routing import _live
from flux_sdk._routing._hedge import Sample
from flux_sdk._routing._live import Live

from ._routing import OK, A, B, Clock, client

pytestmark = pytest.mark.anyio


@pytest.fixture
def router() -> Generator[respx.MockRouter, None, None]:
    with respx.mock(assert_all_called=False) as mock:
        yield mock


def answers(*groups: tuple[int, float, bool]) -> list[Sample]:
    """``count`` answers from ``seconds`` upwards, 0.2 ms apart."""
    return [(seconds + i / 5000, done) for count, seconds, done in groups for i in range(count)]


FAST = (90, 0.05, True)  # 50 to 68 ms
BACKUP = answers((100, 0.05, True))  # 50 to 70 ms, 60 ms its median


def test_a_heavy_tail_is_hedged_near_its_median_a_light_one_at_its_p99() -> None:
    """A tenth of answers ten times slower: hedged near the median (a hedge's image comes
    at about the delay plus the other host's time, so a later one misses 2x p50).
    Without a tail, only the slowest 1% are hedged: the budget is kept for tails."""
    hedge = Hedge()
    tail = answers(FAST, (10, 0.5, True))
    delay = hedge.delay_for(tail, BACKUP, share=0.1)
    assert delay is not None
    assert delay <= sorted(tail)[50][0]  # at or below the median
    light = answers((100, 0.05, True))
    assert hedge.delay_for(light, BACKUP, share=0.1) == pytest.approx(0.0696)  # its p99


def test_a_route_taking_most_calls_is_hedged_no_earlier_than_the_budget_affords() -> None:
    """Taking every call, the route may hedge only max_extra of them: hedging at its
    median would spend the tokens on fast answers and leave the slow ones unhedged."""
    tail = answers(FAST, (10, 0.5, True))
    delay = Hedge().delay_for(tail, BACKUP, share=1.0)
    assert delay == sorted(tail)[89][0]  # its p90: 10% of its calls
    assert Hedge(max_extra=0.3).delay_for(tail, BACKUP, share=1.0) == sorted(tail)[69][0]


def test_answers_given_up_on_for_a_hedge_still_count_as_the_tail() -> None:
    """Slow answers rescued by hedges end as "given up on after 0.1 s": counted as
    finished at 0.1 s the tail would look gone and the hedges would stop."""
    rescued = answers(FAST, (10, 0.1, False))
    finished = answers(FAST, (10, 0.1, True))
    early = Hedge().delay_for(rescued, BACKUP, share=0.1)
    assert early is not None
    assert early <= sorted(rescued)[50][0]
    assert Hedge().delay_for(finished, BACKUP, share=0.1) == sorted(finished)[98][0]


def test_a_route_not_yet_timed_is_hedged_from_the_next_routes_answers() -> None:
    """Before a route has min_samples answers, its calls are hedged by the next route's
    (its first slow answers were never hedged); with neither, not at all."""
    assert Hedge().delay_for([], BACKUP, share=0.5) == pytest.approx(0.0696)
    assert Hedge().delay_for([], [], share=0.5) is None


def test_bad_hedge_settings_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="not both"):
        Hedge(0.1, percentile=90)
    with pytest.raises(ConfigError, match="min_samples"):
        Hedge(min_samples=1)
    with pytest.raises(ConfigError, match="burst"):
        Hedge(burst=0.5)
    assert repr(Hedge()) == "Hedge(max_extra=0.1, burst=5)"


async def test_a_host_given_up_on_for_a_winning_hedge_counts_as_slow_when_balancing(
    router: respx.MockRouter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """alpha never answers; the hedge to beta wins after 0.3 s. alpha's call counts as
    given up on after 0.3 s (for its next hedge delay) and as five times that for
    balancing (no slower answer seen there), so the next call goes to beta; counted as
    nothing, alpha looked fast (it had no answer) and got the call again."""
    clock = Clock()
    monkeypatch.setattr(_live, "_now", clock)

    async def stuck(request: httpx.Request) -> httpx.Response:
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    async def answer(request: httpx.Request) -> httpx.Response:
        clock.now = 0.3
        return OK

    router.post(A.url).mock(side_effect=stuck)
    router.post(B.url).mock(side_effect=answer)
    routes = [Route(A, max_concurrency=4), Route(B, max_concurrency=3)]
    async with client(routes, routing="balanced", hedge=Hedge(0.0)) as flux:
        assert flux._router is not None
        alpha, beta = flux._router.routes
        assert flux._router.order([alpha, beta])[0] is alpha  # more slots, nothing known
        assert (await flux.generate("a cat")).provider == "beta"
        assert list(alpha.samples) == [(0.3, False)]
        assert list(beta.samples) == [(0.3, True)]
        assert alpha.service == pytest.approx(1.5)
        assert flux._router.order([alpha, beta])[0] is beta
        assert alpha.share > beta.share  # the call was tried at alpha first


@pytest.fixture
async def pair(monkeypatch: pytest.MonkeyPatch) -> AsyncGenerator[tuple[Clock, Live, Live], None]:
    """Two balanced routes, timed on a clock of the test's own."""
    clock = Clock()
    clock.now = 1000.0
    monkeypatch.setattr(_live, "_now", clock)
    async with FluxClient([Route(A), Route(B)], routing="balanced") as flux:
        assert flux._router is not None
        first, second = flux._router.routes
        yield clock, first, second


async def test_a_call_given_up_on_counts_as_the_hosts_slow_answers_not_their_mean(
    pair: tuple[Clock, Live, Live],
) -> None:
    """Past 0.12 s this host answered twice just after (answers that beat a hedge) and
    once its tail, 0.6 s. A call given up on there for a winning hedge is a tail call: it
    counts as 0.6 s. Counted as the mean of the three (0.29 s), the host came back into
    favour sooner than after a tail answer seen to its end, and took more calls hedged
    than unhedged."""
    clock, live, _ = pair
    for seconds in [0.05] * 20 + [0.13, 0.13, 0.6]:
        live.answered(seconds)
    live.gave_up(0.12, admitted=clock.now - 0.12)
    assert live.service == pytest.approx(0.6)


async def test_a_hedge_win_keeps_the_slow_host_passed_over_as_long_as_its_answer_would(
    pair: tuple[Clock, Live, Live],
) -> None:
    """Two hosts whose answers past 0.1 s take 2 s. At one a call is seen to its 2 s end;
    at the other the same call is given up on at 0.1 s for a winning hedge. From then on
    both estimates are the same: decaying from the give-up, the hedged host was tried
    again 1.9 s early, and the hedge made the tail host busier than no hedge."""
    clock, hedged, seen = pair
    for live in (hedged, seen):
        live.answered(0.05)
        live.answered(2.0)
    start = clock.now
    clock.now = start + 0.1
    hedged.gave_up(0.1, admitted=start)
    assert hedged.service == pytest.approx(2.0)
    clock.now = start + 2.0
    seen.observe(2.0)  # the same call, answered
    for later in (2.0, 3.0, 6.0):
        clock.now = start + later
        assert hedged.service == pytest.approx(seen.service or 0.0)
    assert (hedged.service or 1.0) < 1.0  # and then tried again, as the other one


async def test_a_tail_never_seen_to_its_end_counts_as_a_stall_not_as_twice_what_it_ran(
    pair: tuple[Clock, Live, Live],
) -> None:
    """Hedged from the first call, a host's tail is never answered: each call given up
    on is all that is known of it. Counted as twice the 0.11 s it ran (0.22 s), the host
    was back in favour within a second and took three times the calls it took unhedged
    (routing.py's tail figure, p99 over 2x p50); counted as five times, as a stall."""
    clock, live, _ = pair
    for _ in range(20):
        live.answered(0.05)
    live.gave_up(0.11, admitted=clock.now - 0.11)
    assert live.service == pytest.approx(0.55)


async def test_slow_answers_pushed_out_by_fast_ones_still_time_a_call_given_up_on(
    pair: tuple[Clock, Live, Live],
) -> None:
    """Two 0.7 s answers, then 200 fast ones: the recent answers hold nothing slower
    than a call given up on at 0.12 s, but the slow answers kept apart do."""
    clock, live, _ = pair
    for seconds in [0.05] * 10 + [0.7] + [0.05] * 10 + [0.7] + [0.05] * 200:
        clock.now += 0.05
        live.answered(seconds)  # as the router does: the answer, then its service time
        live.observe(seconds)
    assert max(live.latencies) == 0.05
    assert (live.service or 1.0) < 0.1
    live.gave_up(0.12, admitted=clock.now - 0.12)
    assert live.service == pytest.approx(0.7)
