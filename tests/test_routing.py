"""Many providers, one call: failover order, circuit breakers, auth at one host, rules per
host, hedging, the deadline and the retry budget across routes, spreading, batches."""

from __future__ import annotations

import base64
import json
import warnings
from collections.abc import Generator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import respx

from flux_sdk import (
    CircuitBreaker,
    ConfigError,
    FluxClient,
    FluxEvent,
    FluxWarning,
    GeneratedImage,
    GenerateRequest,
    Hedge,
    InvalidRequestError,
    ParamRules,
    RequestTimeout,
    Retry,
    RetryBudget,
    Route,
    RoutingError,
    ServerError,
)
from flux_sdk._routing import _live
from flux_sdk.providers import raise_for_status

from ._images import image_bytes

pytestmark = pytest.mark.anyio

PNG = image_bytes(size=2)
OK = httpx.Response(200, json={"image": base64.b64encode(PNG).decode()})


class Host:
    """A one-request host of the tests' own, one per name."""

    def __init__(self, name: str, rules: ParamRules | None = None) -> None:
        self.name = name
        self.rules = rules or ParamRules()
        self.url = f"https://{name}.example/generate"

    def build_request(self, request: GenerateRequest) -> httpx.Request:
        return httpx.Request("POST", self.url, json={"prompt": request.prompt})

    def parse_response(self, request: GenerateRequest, response: httpx.Response) -> GeneratedImage:
        raise_for_status(response, provider=self.name)
        data = base64.b64decode(response.json()["image"])
        return GeneratedImage.from_data(data, provider=self.name, request=request)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def no_sleep(seconds: float) -> None:
    await anyio.lowlevel.checkpoint()


@pytest.fixture
def router() -> Generator[respx.MockRouter, None, None]:
    with respx.mock(assert_all_called=False) as mock:
        yield mock


def client(providers: list[Any], **options: Any) -> FluxClient:
    options.setdefault("max_retries", Retry(3, sleep=no_sleep))
    return FluxClient(providers, **options)


A, B, C = Host("alpha"), Host("beta"), Host("gamma")


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


async def test_cheapest_tries_hosts_in_price_order(router: respx.MockRouter) -> None:
    """routing="cheapest": the lowest price first, then the next, unpriced last."""
    for host in (A, B, C):
        router.post(host.url).respond(503)
    order: list[str] = []
    routes = [Route(A), Route(B, price=0.003), Route(C, price=0.001)]
    retry = Retry(0)
    async with client(
        routes, routing="cheapest", max_retries=retry, on_event=_providers(order)
    ) as flux:
        with pytest.raises(ServerError):
            await flux.generate("a cat")
    assert order == ["gamma", "beta", "alpha"]


def _circuit(flux: FluxClient, index: int) -> str:
    return flux.routes[index].circuit


def _providers(seen: list[str]) -> Any:
    def hook(event: FluxEvent) -> None:
        if event.kind == "attempt":
            seen.append(event.provider)

    return hook


async def test_balanced_spreads_calls_by_weight(
    router: respx.MockRouter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """routing="balanced" sends work to every healthy host, more to the heavier one,
    when the hosts are alike (the estimates' clock stands still, so a slow moment of a
    loaded machine cannot make one host look slower)."""
    monkeypatch.setattr(_live, "_now", lambda: 1000.0)
    router.post(A.url).mock(return_value=OK)
    router.post(B.url).mock(return_value=OK)
    seen: list[str] = []
    routes = [Route(A, weight=3.0), Route(B, weight=1.0)]
    async with client(routes, routing="balanced", on_event=_providers(seen)) as flux:
        for _ in range(200):
            await flux.generate("a cat")
    assert 100 < seen.count("alpha") < 190
    assert seen.count("beta") > 10


async def test_a_batch_runs_at_the_sum_of_the_route_limits(router: respx.MockRouter) -> None:
    """generate_many over two routes runs as many at once as both take, and uses both."""
    in_flight = {"now": 0, "most": 0}

    async def slow(request: httpx.Request) -> httpx.Response:
        in_flight["now"] += 1
        in_flight["most"] = max(in_flight["most"], in_flight["now"])
        await anyio.sleep(0.01)
        in_flight["now"] -= 1
        return OK

    router.post(A.url).mock(side_effect=slow)
    router.post(B.url).mock(side_effect=slow)
    routes = [Route(A, max_concurrency=2), Route(B, max_concurrency=3)]
    seen: list[str] = []
    async with client(routes, routing="balanced", on_event=_providers(seen)) as flux:
        results = await flux.generate_many([f"cat {i}" for i in range(40)])
    assert all(isinstance(r, GeneratedImage) for r in results)
    assert in_flight["most"] == 5
    assert {"alpha", "beta"} <= set(seen)


async def test_balanced_sends_no_call_to_a_full_host_while_another_has_room(
    router: respx.MockRouter,
) -> None:
    """A host at its limit gets no new call while the other has a free slot: the call
    would wait there for a slot while the other host sat idle (a batch then ran at 0.74x
    of two hosts' capacity)."""
    entered, release = anyio.Event(), anyio.Event()
    held: list[str] = []

    def host(name: str) -> Any:
        async def answer(request: httpx.Request) -> httpx.Response:
            if not held:  # the first request holds its host's only slot
                held.append(name)
                entered.set()
                await release.wait()
            return OK

        return answer

    router.post(A.url).mock(side_effect=host("alpha"))
    router.post(B.url).mock(side_effect=host("beta"))
    routes = [Route(A, max_concurrency=1), Route(B, max_concurrency=1)]
    seen: list[str] = []
    flux = client(routes, routing="balanced", on_event=_providers(seen))
    async with flux, anyio.create_task_group() as group:
        group.start_soon(flux.generate, "the slow one")
        await entered.wait()
        with anyio.fail_after(10):  # a call sent to the full host would wait forever
            for i in range(30):
                await flux.generate(f"cat {i}")
        release.set()
    (full,) = held
    assert seen.count(full) == 1
    assert len(seen) == 31


async def test_a_hedge_goes_to_another_host_and_the_loser_is_cancelled(
    router: respx.MockRouter,
) -> None:
    """After the hedge delay a second host is asked; the first image wins, the slow
    attempt is cancelled and nothing is left running."""
    cancelled = anyio.Event()

    async def stuck(request: httpx.Request) -> httpx.Response:
        try:
            await anyio.sleep_forever()
        finally:
            cancelled.set()
        raise AssertionError("unreachable")

    router.post(A.url).mock(side_effect=stuck)
    router.post(B.url).mock(return_value=OK)
    events: list[FluxEvent] = []
    async with client([A, B], hedge=Hedge(0.01), on_event=events.append) as flux:
        image = await flux.generate("a cat")
        assert cancelled.is_set()
        assert [s.in_flight for s in flux.routes] == [0, 0]
    assert image.provider == "beta"
    assert "hedge" in [e.kind for e in events]


async def test_hedging_is_bounded_to_a_share_of_calls(router: respx.MockRouter) -> None:
    """With max_extra=0.1 (and a burst of 1), 50 slow calls hedge at most 6 times."""

    async def slow(request: httpx.Request) -> httpx.Response:
        await anyio.sleep(0.02)
        return OK

    router.post(A.url).mock(side_effect=slow)
    backup = router.post(B.url).mock(return_value=OK)
    hedge = Hedge(0.001, max_extra=0.1, burst=1.0)
    async with client([A, B], hedge=hedge) as flux:
        for _ in range(50):
            await flux.generate("a cat")
    assert 1 <= backup.call_count <= 6


async def test_the_manifest_records_the_host_of_every_attempt(
    router: respx.MockRouter, tmp_path: Path
) -> None:
    """A batch's manifest says which hosts each item tried, failed items too."""
    router.post(A.url).respond(503)
    router.post(B.url).mock(side_effect=[OK, httpx.Response(400, json={"error": "no"})])
    async with client([A, B], max_retries=Retry(0)) as flux:
        await flux.generate_many(["cat one", "cat two"], save_dir=tmp_path)
    lines = [json.loads(x) for x in (tmp_path / "manifest.jsonl").read_text().splitlines() if x]
    assert sorted(tuple(line["hosts"]) for line in lines) == [("alpha", "beta")] * 2
    assert sorted(line.get("provider") or "" for line in lines) == ["beta", "beta"]


async def test_route_states_show_what_a_dashboard_needs(router: respx.MockRouter) -> None:
    """client.routes: circuit, in flight, latency, error rate, counts per host."""
    router.post(A.url).mock(side_effect=[httpx.Response(503), OK, OK])
    router.post(B.url).mock(return_value=OK)
    async with client([A, Route(B, max_concurrency=4)]) as flux:
        for _ in range(3):
            await flux.generate("a cat")
        alpha, beta = flux.routes
    assert (alpha.provider, alpha.calls, alpha.failures, alpha.circuit) == ("alpha", 3, 1, "closed")
    assert alpha.latency_p50 is not None
    assert alpha.error_rate == pytest.approx(1 / 3)
    assert (beta.calls, beta.max_concurrency, beta.in_flight) == (1, 4, 0)
    assert repr(flux) == "FluxClient([alpha, beta], routing='failover')"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"routing": "fastest"}, "routing must be"),
        ({"hedge": 0.5}, "hedge must be a Hedge"),
        ({"breaker": "on"}, "breaker must be a CircuitBreaker"),
    ],
)
async def test_bad_routing_settings_are_config_errors(kwargs: dict[str, Any], match: str) -> None:
    """Routing settings are checked when the client is made."""
    with pytest.raises(ConfigError, match=match):
        FluxClient([A, B], **kwargs)


async def test_bad_routes_are_config_errors() -> None:
    """An empty list, two routes of one name, a bad weight or price: refused at once."""
    with pytest.raises(ConfigError, match="at least one"):
        FluxClient([])
    with pytest.raises(ConfigError, match="both named 'alpha'"):
        FluxClient([A, Host("alpha")])
    with pytest.raises(ConfigError, match="weight"):
        Route(A, weight=0)
    with pytest.raises(ConfigError, match="price"):
        Route(A, price=-1)


async def test_a_hedged_queue_job_that_loses_is_cancelled_on_its_host(
    router: respx.MockRouter,
) -> None:
    """The slow host's accepted job is cancelled there when the other host's image wins."""
    from .test_flows import JOB, QueueHost, status

    slow = QueueHost(base_url="https://slow.example")
    slow.name = "slow-queue"
    jobs = {k: v.replace("queue.example", "slow.example") for k, v in JOB.items()}
    router.post("https://slow.example/jobs").respond(200, json=jobs)
    router.get(jobs["status_url"]).mock(return_value=status("RUNNING"))
    cancel = router.post(jobs["cancel_url"]).respond(202)
    router.post(B.url).mock(return_value=OK)
    async with client([slow, B], hedge=Hedge(0.02)) as flux:
        image = await flux.generate("a cat")
    # The loser's job held its slot until its cancel (in the background, awaited on
    # closing) was sent: a queue host counts the job until then.
    assert [s.in_flight for s in flux.routes] == [0, 0]
    assert image.provider == "beta"
    assert cancel.call_count == 1


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
