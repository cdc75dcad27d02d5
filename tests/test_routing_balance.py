"""routing="balanced" fills each route to what it can take: calls waiting for a slot count
as load, per slot, weighted by how long a call holds a slot there (peak-EWMA)."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import anyio
import httpx
import pytest
import respx

from flux_sdk import FluxClient, Retry, Route
from flux_sdk._routing import _live

from ._routing import OK, A, B, Host, client

pytestmark = pytest.mark.anyio


@pytest.fixture
def router() -> Generator[respx.MockRouter, None, None]:
    with respx.mock(assert_all_called=False) as mock:
        yield mock


def held(release: anyio.Event, counts: dict[str, int], name: str) -> Any:
    async def answer(request: httpx.Request) -> httpx.Response:
        counts[name] += 1
        await release.wait()
        return OK

    return answer


async def test_calls_waiting_for_a_slot_go_where_the_slots_are(router: respx.MockRouter) -> None:
    """With both routes full, new calls queue in proportion to each route's slots (1 and
    3): a queue counted only by calls holding a slot put half of them on the small
    host, which then ran long after the large one had finished."""
    release = anyio.Event()
    sent = {"alpha": 0, "beta": 0}
    router.post(A.url).mock(side_effect=held(release, sent, "alpha"))
    router.post(B.url).mock(side_effect=held(release, sent, "beta"))
    routes = [Route(A, max_concurrency=1), Route(B, max_concurrency=3)]
    flux = client(routes, routing="balanced")
    assert flux._router is not None
    small, large = flux._router.routes
    async with flux, anyio.create_task_group() as group:
        for i in range(40):
            group.start_soon(flux.generate, f"cat {i}")
        await anyio.wait_all_tasks_blocked()  # both hosts full; the rest wait for slots
        queued = (small.pending, large.pending)
        release.set()
    assert sum(queued) == 40
    assert 8 <= queued[0] <= 12  # a quarter of the calls for a quarter of the slots
    assert small.pending == large.pending == 0


async def test_a_route_with_a_free_slot_comes_first_whatever_its_speed(
    router: respx.MockRouter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A slow host with a free slot still takes the call before a fast, full one: the
    host's time decides only between routes that would both make the call wait."""
    _clock(monkeypatch)
    flux = client([Route(A, max_concurrency=1), Route(B, max_concurrency=1)], routing="balanced")
    assert flux._router is not None
    slow, fast = flux._router.routes
    slow.observe(10.0)
    fast.observe(0.1)
    assert flux._router.order([slow, fast])[0] is fast
    fast.pending = 1  # the fast host's one slot is taken
    assert flux._router.order([slow, fast])[0] is slow
    await flux.aclose()


async def test_a_slow_host_gets_fewer_calls_and_is_tried_again_later(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """After a slow answer a host is passed over while a faster one is as free, and its
    estimate decays while it is left alone, so it is tried again."""
    clock = _clock(monkeypatch)
    routes = [Route(A, max_concurrency=4), Route(B, max_concurrency=4)]
    flux = FluxClient(routes, routing="balanced")
    assert flux._router is not None
    slow, fast = flux._router.routes
    slow.observe(0.05)
    slow.observe(0.5)  # one slow answer counts at once (the peak)
    fast.observe(0.05)
    fast.pending = 2  # three calls' time at the fast host is still less than one slow
    assert slow.service == pytest.approx(0.5)
    assert flux._router.order([slow, fast])[0] is fast
    clock.now += 10 * _live._DECAY
    assert (slow.service or 1.0) < 0.05
    fast.observe(0.05)
    assert flux._router.order([slow, fast])[0] is slow
    await flux.aclose()


async def test_a_faster_answer_lowers_the_estimate_gradually(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = _clock(monkeypatch)
    flux = FluxClient([Route(A), Route(Host("delta"))], routing="balanced")
    assert flux._router is not None
    live = flux._router.routes[0]
    assert flux.routes[0].latency_p50 is None  # nothing seen yet
    live.observe(1.0)
    clock.now += 0.1
    live.observe(0.2)
    estimate = live.service
    assert estimate is not None
    assert 0.2 < estimate < 1.0
    await flux.aclose()


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _clock(monkeypatch: pytest.MonkeyPatch) -> _Clock:
    clock = _Clock()
    monkeypatch.setattr(_live, "_now", clock)
    return clock


async def test_a_retry_backoff_does_not_count_as_the_hosts_time(
    router: respx.MockRouter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A call refused once (503) waits out its backoff holding no slot, then is served
    at once: the host's time is that last request's, not the backoff's, so one refusal
    does not make the host look slow and send the next calls elsewhere."""
    clock = _clock(monkeypatch)

    async def backoff(seconds: float) -> None:
        clock.now += 5.0  # a long wait for a free retry

    # The host asks for the retry (Retry-After), so the call stays at it.
    refused = httpx.Response(503, headers={"retry-after": "1"}, json={"error": "busy"})
    answers = iter([refused, OK])
    router.post(A.url).mock(side_effect=lambda request: next(answers))
    flux = FluxClient([Route(A), Route(B)], max_retries=Retry(3, sleep=backoff))
    assert flux._router is not None
    async with flux:
        image = await flux.generate("a fox")
    assert image.provider == "alpha"
    assert image.attempts == 2
    service = flux._router.routes[0].service
    assert service is not None
    assert service < 1.0


async def test_a_host_with_calls_still_at_it_does_not_look_faster_for_waiting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A small host answers each of many processes seldom; while this process's calls
    are still there its estimate holds (it is not left alone), so a long wait for an
    answer does not make it look free."""
    clock = _clock(monkeypatch)
    flux = FluxClient(
        [Route(A, max_concurrency=4), Route(B, max_concurrency=16)], routing="balanced"
    )
    assert flux._router is not None
    small, large = flux._router.routes
    small.observe(0.4)
    large.observe(0.4)
    small.pending = 8  # two calls per slot waiting
    large.pending = 16  # one per slot
    clock.now += 5 * _live._DECAY  # no answer from the small host for a while
    assert small.service == pytest.approx(0.4)
    assert flux._router.order([small, large])[0] is large
    small.pending = 0  # left alone now: its estimate decays, so it is tried again
    assert (small.service or 1.0) < 0.1
    await flux.aclose()
