"""Failover between hosts: list order, circuit breakers, auth, rules, deadline, retry budget."""

from __future__ import annotations

import warnings

import anyio
import httpx
import pytest
import respx

from flux_sdk import (
    CircuitBreaker,
    FluxEvent,
    FluxWarning,
    InvalidRequestError,
    ParamRules,
    RequestTimeout,
    Retry,
    RetryBudget,
    Route,
    RoutingError,
    ServerError,
)

from ._routing import OK, A, B, C, Clock, Host, _circuit, client, no_sleep

pytestmark = pytest.mark.anyio


async def test_a_failing_host_fails_over_in_list_order(router: respx.MockRouter) -> None:
    """The next host takes the call when the first fails; no retry is spent on the first."""
    first = router.post(A.url).respond(503)
    second = router.post(B.url).mock(return_value=OK)
    third = router.post(C.url).mock(return_value=OK)
    events: list[FluxEvent] = []
    async with client([A, B, C], on_event=events.append) as flux:
        image = await flux.generate("a cat")
    assert image.provider == "beta"
    assert (first.call_count, second.call_count, third.call_count) == (1, 1, 0)
    assert image.attempts == 2
    assert image.hosts == ("alpha", "beta")
    assert [e.kind for e in events] == ["attempt", "failover", "attempt", "success"]
    assert [e.provider for e in events if e.kind == "attempt"] == ["alpha", "beta"]


async def test_a_host_that_asks_for_a_retry_keeps_the_call(router: respx.MockRouter) -> None:
    """A 429 with Retry-After is the host asking: the call waits and stays."""
    first = router.post(A.url).mock(
        side_effect=[httpx.Response(429, headers={"retry-after": "1"}), OK]
    )
    second = router.post(B.url).mock(return_value=OK)
    async with client([A, B]) as flux:
        image = await flux.generate("a cat")
    assert (image.provider, first.call_count, second.call_count) == ("alpha", 2, 0)


async def test_the_last_host_retries_as_a_single_provider_would(router: respx.MockRouter) -> None:
    """With no other host left, the usual retries apply."""
    router.post(A.url).respond(503)
    last = router.post(B.url).mock(side_effect=[httpx.Response(502), OK])
    async with client([A, B]) as flux:
        image = await flux.generate("a cat")
    assert (image.provider, last.call_count, image.attempts) == ("beta", 2, 3)


async def test_a_request_error_does_not_fail_over(router: respx.MockRouter) -> None:
    """A 400 about the request would fail anywhere: it surfaces, no other host is paid."""
    router.post(A.url).respond(400, json={"error": "bad prompt"})
    second = router.post(B.url).mock(return_value=OK)
    async with client([A, B]) as flux:
        with pytest.raises(Exception, match="bad prompt"):
            await flux.generate("a cat")
    assert second.call_count == 0


async def test_a_maybe_billed_failure_stays_put_when_the_user_says_so(
    router: respx.MockRouter,
) -> None:
    """retry_maybe_billed=False holds across routes: a 500 (the model may have run and
    been paid for) is not sent to a second host either."""
    router.post(A.url).respond(500, json={"error": "crashed"})
    second = router.post(B.url).mock(return_value=OK)
    retry = Retry(3, sleep=no_sleep, retry_maybe_billed=False)
    async with client([A, B], max_retries=retry) as flux:
        with pytest.raises(ServerError) as caught:
            await flux.generate("a cat")
    assert caught.value.billed == "maybe"
    assert second.call_count == 0


async def test_the_circuit_opens_then_lets_one_probe_through(router: respx.MockRouter) -> None:
    """Closed -> open after 3 failures -> half-open after the cooldown -> closed."""
    clock = Clock()
    breaker = CircuitBreaker(failures=3, cooldown=30, clock=clock)
    dead = router.post(A.url).respond(503)
    router.post(B.url).mock(return_value=OK)
    async with client([A, B], breaker=breaker) as flux:
        for _ in range(3):
            await flux.generate("a cat")
        assert flux.routes[0].circuit == "open"
        for _ in range(5):
            assert (await flux.generate("a cat")).provider == "beta"
        assert dead.call_count == 3  # nothing sent to an open circuit
        clock.now = 31.0
        assert _circuit(flux, 0) == "half-open"
        await flux.generate("a cat")  # the probe fails: open again
        assert (dead.call_count, _circuit(flux, 0)) == (4, "open")
        dead.mock(return_value=OK)
        clock.now = 62.0
        assert (await flux.generate("a cat")).provider == "alpha"
        assert _circuit(flux, 0) == "closed"


async def test_a_half_open_circuit_lets_one_probe_at_a_time() -> None:
    """Two calls arriving in half-open: only one may probe."""
    clock = Clock()
    breaker = CircuitBreaker(failures=1, cooldown=1, clock=clock)
    breaker.on_failure(ServerError("x", status_code=503), "alpha")
    assert breaker.state == "open"
    assert not breaker.try_acquire()
    clock.now = 2
    assert breaker.try_acquire()
    assert not breaker.try_acquire()
    breaker.release()
    assert breaker.try_acquire()


async def test_a_failure_rate_over_the_window_opens_the_circuit() -> None:
    """Failures need not be consecutive: half of the last ten trips it."""
    breaker = CircuitBreaker(failures=100, failure_rate=0.5, window=10, min_calls=10)
    for i in range(10):
        if i % 2:
            breaker.on_failure(ServerError("x", status_code=500), "alpha")
        else:
            breaker.on_success()
    assert breaker.state == "open"


async def test_a_copied_breaker_keeps_the_settings_and_starts_closed() -> None:
    """Each route gets ``breaker.copy()``: the template's settings and clock, none of
    its history, even when the template itself has opened."""
    clock = Clock()
    template = CircuitBreaker(failures=2, cooldown=5, clock=clock)
    for _ in range(2):
        template.on_failure(ServerError("x", status_code=500), "alpha")
    assert template.state == "open"
    fresh = template.copy()
    assert (fresh.state, fresh.error_rate, fresh.failures, fresh.cooldown) == ("closed", 0, 2, 5)
    fresh.on_failure(ServerError("x", status_code=500), "alpha")
    after_one = fresh.state  # one failure of the two it takes
    fresh.on_failure(ServerError("x", status_code=500), "alpha")
    clock.now = 4.0
    within_cooldown = fresh.state
    clock.now = 5.0
    assert (after_one, within_cooldown, fresh.state) == ("closed", "open", "half-open")
    assert template.error_rate == 1.0


async def test_a_wrong_key_at_one_host_opens_it_long_and_warns_once(
    router: respx.MockRouter,
) -> None:
    """401 at one host: warn once, stop sending there, the others carry on."""
    clock = Clock()
    refused = router.post(A.url).respond(401, json={"error": "bad key"})
    router.post(B.url).mock(return_value=OK)
    async with client([A, B], breaker=CircuitBreaker(clock=clock)) as flux:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            providers = [(await flux.generate("a cat")).provider for _ in range(4)]
        assert providers == ["beta"] * 4
        clock.now = 300.0  # past the usual cooldown, within the auth one
        await flux.generate("a cat")
    assert [str(w.message)[:31] for w in caught] == ["alpha refused the API key (HTTP"]
    assert caught[0].category is FluxWarning
    assert refused.call_count == 1


async def test_each_request_goes_to_a_host_whose_rules_accept_it(
    router: respx.MockRouter,
) -> None:
    """A host that takes no width is skipped for a request with one, and no request that
    no host accepts is ever sent."""
    small = Host("small", ParamRules(size=None))
    big = Host("big", ParamRules(size=(64, 2048)))
    no_size = router.post(small.url).mock(return_value=OK)
    sized = router.post(big.url).mock(return_value=OK)
    async with client([small, big]) as flux:
        assert (await flux.generate("a cat", width=512)).provider == "big"
        assert (await flux.generate("a cat")).provider == "small"
        with pytest.raises(InvalidRequestError) as caught:
            await flux.generate("a cat", width=4096)
    assert "small does not accept width" in str(caught.value)
    assert "big needs width between 64 and 2048" in str(caught.value)
    assert (no_size.call_count, sized.call_count) == (1, 1)


async def test_every_circuit_open_is_a_routing_error(router: respx.MockRouter) -> None:
    """When no route may be tried, the error says which circuits are open and for how long."""
    router.post(A.url).respond(503)
    router.post(B.url).respond(503)
    breaker = CircuitBreaker(failures=1, clock=Clock())
    async with client([A, B], breaker=breaker, max_retries=Retry(0)) as flux:
        with pytest.raises(ServerError):
            await flux.generate("a cat")
        with pytest.raises(RoutingError, match="alpha: circuit open for 30 s more"):
            await flux.generate("a cat")


async def test_the_deadline_holds_across_routes(router: respx.MockRouter) -> None:
    """A hung first host costs the caller the deadline, not a second chance beyond it."""

    async def hang(request: httpx.Request) -> httpx.Response:
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    router.post(A.url).mock(side_effect=hang)
    second = router.post(B.url).mock(return_value=OK)
    async with client([A, B], deadline=0.05) as flux:
        with pytest.raises(RequestTimeout, match="deadline"):
            await flux.generate("a cat")
    assert second.call_count == 0


async def test_failover_spends_the_shared_retry_budget(router: respx.MockRouter) -> None:
    """Moving to another host is a retry: an empty budget surfaces the first error."""
    router.post(A.url).respond(503)
    second = router.post(B.url).mock(return_value=OK)
    retry = Retry(3, sleep=no_sleep, budget=RetryBudget(ratio=0, capacity=0, in_flight=0))
    async with client([A, B], max_retries=retry) as flux:
        with pytest.raises(ServerError):
            await flux.generate("a cat")
    assert second.call_count == 0


async def test_calls_waiting_when_a_circuit_opens_move_on_without_sending_or_a_retry(
    router: respx.MockRouter,
) -> None:
    """The calls queued for a host's slot when its circuit opens go elsewhere: nothing
    more is sent to the broken host, and leaving it spends no retry token."""

    async def broken(request: httpx.Request) -> httpx.Response:
        await anyio.sleep(0.01)
        return httpx.Response(503)

    dead = router.post(A.url).mock(side_effect=broken)
    router.post(B.url).mock(return_value=OK)
    retry = Retry(3, sleep=no_sleep, budget=RetryBudget(ratio=0, capacity=0, in_flight=0))
    routes = [Route(A, max_concurrency=1), B]
    async with client(routes, max_retries=retry, breaker=CircuitBreaker(failures=1)) as flux:
        async with anyio.create_task_group() as group:
            for i in range(5):
                group.start_soon(flux.generate, f"cat {i}")
        assert flux.routes[1].calls == 5
    assert dead.call_count == 1
