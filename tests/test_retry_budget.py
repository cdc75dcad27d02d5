"""The retry budget covers every request in flight: a burst of refusals loses no call,
and a total outage still makes a bounded number of attempts."""

from __future__ import annotations

from collections.abc import Generator

import anyio
import httpx
import pytest
import respx

from flux_sdk import Dataoorts, FluxClient, Retry, RetryBudget, ServerError

from ._sleeps import Sleeps
from .test_retry import OK, URL, run_calls

pytestmark = pytest.mark.anyio

WIDTH = 64  # requests in flight at once
REFUSED = 40  # of them refused together


@pytest.fixture
def router() -> Generator[respx.MockRouter, None, None]:
    with respx.mock(assert_all_called=False) as mock:
        yield mock


async def test_a_burst_of_429s_at_concurrency_64_loses_no_call(
    router: respx.MockRouter,
) -> None:
    """64 requests at the host at once, 40 of them refused with Retry-After: 0 (a limit's
    last slow-start doubling overshooting the host): with the default budget every call
    is retried and succeeds, where a sack of 10 tokens lost 30 of them."""
    arrived = 0
    everyone = anyio.Event()

    async def host(request: httpx.Request) -> httpx.Response:
        nonlocal arrived
        arrived += 1
        mine = arrived
        if mine > WIDTH:
            return OK  # a retry
        if mine == WIDTH:
            everyone.set()
        await everyone.wait()  # the whole wave is in flight before any answer
        if mine <= REFUSED:
            return httpx.Response(429, headers={"Retry-After": "0"}, json={"error": "busy"})
        return OK

    route = router.post(URL).mock(side_effect=host)
    sleeps = Sleeps()
    retry = Retry(sleep=sleeps)  # the default budget
    async with FluxClient(
        Dataoorts(api_key="sk-test"), max_retries=retry, max_concurrency=WIDTH
    ) as client:
        errors = await run_calls(client, WIDTH)
    assert errors == []
    assert route.call_count == WIDTH + REFUSED
    assert sleeps.delays == [0.0] * REFUSED
    assert retry.budget.size == WIDTH


async def test_a_total_outage_at_concurrency_64_stays_within_the_bound(
    router: respx.MockRouter,
) -> None:
    """Every answer a 503: attempts stay within (1 + ratio) x calls + the most requests
    in flight at once, and once the sack is empty a failure surfaces after one attempt."""
    route = router.post(URL).respond(503)
    budget = RetryBudget()
    retry = Retry(sleep=Sleeps(), budget=budget)
    async with FluxClient(
        Dataoorts(api_key="sk-test"), max_retries=retry, max_concurrency=WIDTH
    ) as client:
        errors = await run_calls(client, 200)
    assert len(errors) == 200
    assert all(isinstance(e, ServerError) for e in errors)
    assert budget.size <= WIDTH
    assert route.call_count <= 1.2 * 200 + max(budget.capacity, WIDTH)
    assert sum(1 for e in errors if e.attempts == 1) > 100


def test_the_sack_grows_with_the_most_requests_in_flight_once() -> None:
    """Each request that raises the high-water mark brings one token; requests that only
    reach it again bring none; in_flight=0 keeps the sack at its capacity."""
    budget = RetryBudget(ratio=0.0, capacity=2)
    for _ in range(5):
        budget.on_request_start()
    assert (budget.size, budget.tokens) == (5, 5)
    for _ in range(5):
        assert budget.try_spend()
        budget.on_request_end()
    for _ in range(5):
        budget.on_request_start()  # as many as before: no new token
    assert not budget.try_spend()
    for _ in range(9):
        budget.on_success()
    assert budget.tokens == 5  # successes refill up to the grown size

    fixed = RetryBudget(ratio=0.0, capacity=2, in_flight=0)
    for _ in range(5):
        fixed.on_request_start()
    assert (fixed.size, fixed.tokens) == (2, 2)
