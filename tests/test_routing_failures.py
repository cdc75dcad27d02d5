"""Routing when hosts really fail: a spent quota is left for long, every failure at a
host counts for its circuit, hedges return at once and are paid only when sent, and a
busy first route sends the overflow to the backup."""

from __future__ import annotations

import base64
import json
import warnings
from collections.abc import Generator

import anyio
import httpx
import pytest
import respx

from flux_sdk import (
    CircuitBreaker,
    CloudflareWorkersAI,
    ConcurrencyLimit,
    Dataoorts,
    Fal,
    FluxClient,
    FluxEvent,
    FluxWarning,
    Hedge,
    InvalidResponseError,
    ParamRules,
    QuotaExceeded,
    RateLimitError,
    Retry,
    RetryBudget,
    Route,
    ServerError,
    Together,
)
from flux_sdk.emulator import DEFAULT_API_KEY, EmulatorApp
from flux_sdk.providers import FlowProvider, Provider

from ._images import image_bytes
from ._routing import OK, Clock, Host, _circuit, client, no_sleep
from ._server import serve
from .test_flows import JOB, QueueHost, status

pytestmark = pytest.mark.anyio

KEY = "sk-same-size-test-key"


@pytest.fixture
def router() -> Generator[respx.MockRouter, None, None]:
    with respx.mock(assert_all_called=False) as mock:
        yield mock


A, B = Host("alpha"), Host("beta")
SPENT = {"error": {"message": "You exceeded your current quota", "code": "insufficient_quota"}}


async def test_a_402_is_a_spent_quota_never_retried_at_that_host(router: respx.MockRouter) -> None:
    spent = router.post(A.url).respond(402, json={"error": "no credit"})
    async with FluxClient(A, max_retries=Retry(3, sleep=no_sleep)) as flux:
        with pytest.raises(QuotaExceeded, match="credit") as caught:
            await flux.generate("a cat")
    assert spent.call_count == 1
    assert isinstance(caught.value, RateLimitError)
    assert (caught.value.retryable, caught.value.billed) == (False, "no")


async def test_a_spent_quota_fails_over_and_shuts_the_route_for_the_quota_cooldown(
    router: respx.MockRouter,
) -> None:
    """One 402 and the route is left for quota_cooldown (not the short cooldown): the
    backup takes this call and the next ones, with a warning that says why."""
    clock = Clock()
    breaker = CircuitBreaker(cooldown=30, quota_cooldown=3600, clock=clock)
    spent = router.post(A.url).respond(402, json={"error": "no credit"})
    backup = router.post(B.url).mock(return_value=OK)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        async with client([A, B], breaker=breaker) as flux:
            for _ in range(5):
                assert (await flux.generate("a cat")).provider == "beta"
            clock.now = 600.0
            assert _circuit(flux, 0) == "open"
            clock.now = 3601.0
            assert _circuit(flux, 0) == "half-open"
    assert (spent.call_count, backup.call_count) == (1, 5)
    assert [w for w in caught if issubclass(w.category, FluxWarning) and "quota" in str(w.message)]


async def test_insufficient_quota_at_an_images_api_host_fails_over(
    router: respx.MockRouter,
) -> None:
    together = Together("tg-key", base_url="https://together.example")
    spent = router.post("https://together.example/v1/images/generations").respond(429, json=SPENT)
    router.post(B.url).mock(return_value=OK)
    async with client([together, B]) as flux:
        with pytest.warns(FluxWarning, match="quota or credit is spent"):
            image = await flux.generate("a cat")
        assert flux.routes[0].circuit == "open"
    assert (image.provider, spent.call_count) == ("beta", 1)


async def test_cloudflares_spent_daily_allocation_3036_fails_over() -> None:
    """The emulator's Workers AI answers 429 code 3036 once its daily images are spent."""
    app = EmulatorApp(cloudflare_daily_images=0)
    with serve(app) as url, respx.mock(assert_all_called=False) as router:
        router.route(host="127.0.0.1").pass_through()
        router.post(B.url).mock(return_value=OK)
        cloudflare = CloudflareWorkersAI(DEFAULT_API_KEY, "acct", base_url=f"{url}/client/v4")
        async with client([cloudflare, B]) as flux:
            with pytest.warns(FluxWarning, match="cloudflare's quota"):
                image = await flux.generate("a cat")
            assert flux.routes[0].circuit == "open"
        assert (image.provider, app.requests_seen) == ("beta", 1)


@pytest.mark.parametrize(
    ("answer", "retry", "error"),
    [
        (httpx.Response(500), Retry(3, sleep=no_sleep, retry_maybe_billed=False), ServerError),
        (
            httpx.Response(200, json={"nothing": 1}),
            Retry(3, sleep=no_sleep, retry_maybe_billed=False),
            InvalidResponseError,
        ),
    ],
    ids=["5xx-not-retried-when-maybe-billed", "200-without-an-image"],
)
async def test_failures_that_keep_the_call_still_open_the_circuit(
    router: respx.MockRouter, answer: httpx.Response, retry: Retry, error: type[Exception]
) -> None:
    """A failure the retry policy will not move (it may have been billed) is raised, not
    resent; but it counts, so after ``failures`` of them the next calls go elsewhere."""
    broken = router.post(A.url).mock(return_value=answer)
    router.post(B.url).mock(return_value=OK)
    breaker = CircuitBreaker(failures=3)
    async with client([A, B], max_retries=retry, breaker=breaker) as flux:
        for _ in range(3):
            with pytest.raises(error):
                await flux.generate("a cat")
        for _ in range(10):
            assert (await flux.generate("a cat")).provider == "beta"
    assert broken.call_count == 3


async def test_a_queue_submit_answered_500_opens_the_circuit_without_a_resend(
    router: respx.MockRouter,
) -> None:
    queue = QueueHost()
    submits = router.post("https://queue.example/jobs").respond(500)
    router.post(B.url).mock(return_value=OK)
    async with client([queue, B], breaker=CircuitBreaker(failures=2)) as flux:
        for _ in range(2):
            with pytest.raises(ServerError) as caught:
                await flux.generate("a cat")
            assert caught.value.billed == "maybe"
        assert (await flux.generate("a cat")).provider == "beta"
    assert submits.call_count == 2  # each maybe-accepted submit sent once


async def test_a_hedge_returns_the_winner_before_the_losers_cancel_ends(
    router: respx.MockRouter,
) -> None:
    """The slow queue host's cancel is held open by the host: the winning image still
    comes back at once; aclose() waits for the cancel, and the ledger counts it."""
    slow = QueueHost(base_url="https://slow.example")
    slow.name = "slow-queue"
    jobs = {k: v.replace("queue.example", "slow.example") for k, v in JOB.items()}
    router.post("https://slow.example/jobs").respond(200, json=jobs)
    router.get(jobs["status_url"]).mock(return_value=status("RUNNING"))
    release, cancelling = anyio.Event(), anyio.Event()

    async def held_cancel(request: httpx.Request) -> httpx.Response:
        cancelling.set()
        await release.wait()
        return httpx.Response(202)

    cancel = router.post(jobs["cancel_url"]).mock(side_effect=held_cancel)
    router.post(B.url).mock(return_value=OK)
    flux = client([slow, B], hedge=Hedge(0.02))
    returned, closed = anyio.Event(), anyio.Event()

    async def use() -> None:
        async with flux:
            assert (await flux.generate("a cat")).provider == "beta"
            returned.set()
        closed.set()

    # Before the fix the image waited for the held cancel: this would never return.
    with anyio.fail_after(10):
        async with anyio.create_task_group() as group:
            group.start_soon(use)
            await returned.wait()
            await cancelling.wait()
            await anyio.lowlevel.checkpoint()
            assert not closed.is_set()  # aclose() waits for the cancel
            release.set()
    assert closed.is_set()
    assert cancel.call_count == 1
    assert flux.ledger["slow-queue"].attempts >= 2  # submit, polls and the cancel


async def test_a_hedge_that_never_got_a_slot_spends_no_token(router: respx.MockRouter) -> None:
    """The backup's one slot (shared with another client) is taken, so the hedge waits
    for it; the first host answers first: the hedge is dropped unsent, and neither a
    hedge token nor a retry token is spent on it."""
    entered, release = anyio.Event(), anyio.Event()

    async def slow_alpha(request: httpx.Request) -> httpx.Response:
        await anyio.sleep(0.05)
        return OK

    async def hold_beta(request: httpx.Request) -> httpx.Response:
        entered.set()
        await release.wait()
        return OK

    router.post(A.url).mock(side_effect=slow_alpha)
    beta = router.post(B.url).mock(side_effect=hold_beta)
    slot = ConcurrencyLimit(1)
    hedge = Hedge(0.001, burst=1.0, max_extra=0.1)
    retry = Retry(3, sleep=no_sleep, budget=RetryBudget(ratio=0.1, capacity=1))
    routes = [A, Route(B, max_concurrency=slot)]
    async with (
        FluxClient(B, max_concurrency=slot) as other,
        client(routes, hedge=hedge, max_retries=retry) as flux,
        anyio.create_task_group() as group,
    ):
        group.start_soon(other.generate, "holds the slot")
        await entered.wait()
        image = await flux.generate("a cat")
        assert hedge.can_spend()  # the one token of the burst is still there
        assert retry.budget.try_spend()
        release.set()
    assert image.provider == "alpha"
    assert beta.call_count == 1  # only the other client's call


async def test_a_failover_batch_uses_the_backup_while_the_first_route_is_full(
    router: respx.MockRouter,
) -> None:
    """With the first route's one slot taken, the other calls go to the backup at once
    instead of queueing for that slot."""
    release = anyio.Event()

    async def held(request: httpx.Request) -> httpx.Response:
        await release.wait()
        return OK

    first = router.post(A.url).mock(side_effect=held)
    backup = router.post(B.url).mock(return_value=OK)
    routes = [Route(A, max_concurrency=1), Route(B, max_concurrency=8)]
    async with client(routes) as flux, anyio.create_task_group() as group:
        group.start_soon(flux.generate, "the held one")
        while flux.routes[0].in_flight == 0:
            await anyio.lowlevel.checkpoint()
        for i in range(6):
            assert (await flux.generate(f"cat {i}")).provider == "beta"
        release.set()
    assert (first.call_count, backup.call_count) == (1, 6)


async def test_a_route_that_cannot_honour_the_size_is_skipped_with_its_reason(
    router: respx.MockRouter,
) -> None:
    """A host that takes no width or height is not sent the call with its own default
    size: it is skipped, and a "skip" event says why."""
    fixed = Host("fixed", ParamRules(size=None))
    never = router.post(fixed.url).mock(return_value=OK)
    router.post(B.url).mock(return_value=OK)
    events: list[FluxEvent] = []
    async with client([fixed, B], on_event=events.append) as flux:
        image = await flux.generate("a cat", width=512, height=512)
    assert (image.provider, never.call_count) == ("beta", 0)
    (skip,) = [e for e in events if e.kind == "skip"]
    assert skip.provider == "fixed"
    assert "width" in str(skip.error)


async def test_a_failed_call_says_whether_resending_it_could_pay_twice(
    router: respx.MockRouter,
) -> None:
    """Refusals (429s without Retry-After) at every route: nothing was paid, so the item
    may be sent again; a 500 kept at its host under retry_maybe_billed=False may have
    been paid."""
    router.post(A.url).respond(429)
    router.post(B.url).respond(429)
    async with client([A, B], max_retries=Retry(0)) as flux:
        with pytest.raises(RateLimitError) as refused:
            await flux.generate("a cat")
    assert refused.value.hosts == ("alpha", "beta")
    assert refused.value.resend_could_pay_twice is False
    router.post(A.url).respond(500)
    retry = Retry(3, sleep=no_sleep, retry_maybe_billed=False)
    async with client([A, B], max_retries=retry) as flux:
        with pytest.raises(ServerError) as paid:
            await flux.generate("a cat")
    assert paid.value.resend_could_pay_twice is True


async def test_a_routed_call_without_a_size_makes_the_same_size_on_every_route(
    router: respx.MockRouter,
) -> None:
    """fal's own default is 1024x768; routed, a call that names no size is sent 1024x1024
    on each host that takes a size, so the route that serves it does not change it; a
    host that takes no size is sent none."""
    png = base64.b64encode(image_bytes(size=2)).decode()
    busy = router.post("https://api.together.ai/v1/images/generations").respond(503)
    fal = router.post("https://fal.run/fal-ai/flux/schnell").respond(
        200, json={"images": [{"url": "data:image/png;base64," + png}]}
    )
    fixed = router.post("https://cloud.dataoorts.com/api/v1").respond(
        200, json={"result": {"image_base64": png}, "success": True}
    )
    providers: list[Provider | FlowProvider] = [
        Together(KEY),
        Fal(KEY, queue=False),
        Dataoorts(KEY),
    ]
    async with FluxClient(providers, max_retries=Retry(0, sleep=no_sleep)) as flux:
        assert (await flux.generate("a cat")).provider == "fal"
        assert (await flux.generate("a cat", width=512, height=768)).provider == "fal"
    sent = [json.loads(call.request.content) for call in busy.calls]
    assert [(body["width"], body["height"]) for body in sent] == [(1024, 1024), (512, 768)]
    sizes = [json.loads(call.request.content)["image_size"] for call in fal.calls]
    assert sizes == [{"width": 1024, "height": 1024}, {"width": 512, "height": 768}]
    assert not fixed.called

    async with FluxClient([Dataoorts(KEY), Together(KEY)]) as flux:
        assert (await flux.generate("a cat")).provider == "dataoorts"
    assert "width" not in json.loads(fixed.calls.last.request.content)["data"]
