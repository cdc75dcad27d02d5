"""The default chain: order, deadline, concurrency and rate limits, and cancellation."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Generator, Iterator
from typing import Any

import anyio
import httpx
import pytest
import respx

from flux_sdk import (
    AdaptiveLimit,
    AttemptNext,
    Call,
    CallNext,
    ConcurrencyLimit,
    ConfigError,
    Dataoorts,
    Deadline,
    FluxClient,
    GeneratedImage,
    InvalidRequestError,
    RateLimit,
    RequestTimeout,
    Retry,
    ServerError,
)
from flux_sdk.emulator import DEFAULT_API_KEY, EmulatorApp

from ._images import image_bytes
from ._reliability import pool_state
from ._server import serve

pytestmark = pytest.mark.anyio

URL = "https://cloud.dataoorts.com/api/v1"


OK_JSON = {
    "result": {"image_base64": base64.b64encode(image_bytes(size=2)).decode()},
    "success": True,
}


@pytest.fixture
def router() -> Generator[respx.MockRouter, None, None]:
    with respx.mock(assert_all_called=False) as mock:
        yield mock


def _client(**kwargs: Any) -> FluxClient:
    return FluxClient(Dataoorts(api_key="sk-mw"), **kwargs)


async def test_default_chains_are_deadline_then_yours_and_rate_concurrency_then_yours() -> None:
    """The built-in layers wrap the call and each attempt in the documented order."""

    async def mine(call: Call, call_next: CallNext) -> GeneratedImage:
        return await call_next(call)

    async def each(call: Call, call_next: AttemptNext) -> httpx.Response:
        return await call_next(call)

    client = _client(rate_limit=5.0, middleware=[mine], attempt_middleware=[each])
    assert [type(layer) for layer in client.middleware[:1]] == [Deadline]
    assert client.middleware[1:] == (mine,)
    kinds = [type(layer) for layer in client.attempt_middleware[:2]]
    assert kinds == [RateLimit, AdaptiveLimit]
    assert client.attempt_middleware[2:] == (each,)
    assert isinstance(client.retry, Retry)
    plain = _client()
    assert [type(x) for x in plain.middleware] == [Deadline]
    assert [type(x) for x in plain.attempt_middleware] == [AdaptiveLimit]
    fixed = _client(max_concurrency=16)
    assert [type(x) for x in fixed.attempt_middleware] == [ConcurrencyLimit]
    assert fixed.concurrency.limit == 16
    await fixed.aclose()
    await client.aclose()
    await plain.aclose()


async def test_each_request_in_flight_has_a_connection_of_its_own(
    router: respx.MockRouter,
) -> None:
    """No request waits for a connection, and no more are made than the limit allows."""
    router.post(URL).respond(200, json=OK_JSON)
    async with _client(max_concurrency=7) as client:
        async with anyio.create_task_group() as group:
            for i in range(40):
                group.start_soon(client.generate, f"prompt {i}")
        senders = client._http._connections.clients
        assert 1 <= len(senders) <= 7
        # respx patches httpcore, so each lean connection sent through its httpx client.
        https = [getattr(sender, "fallback", sender) for sender in senders]
        for http in https:
            pool = http._transport._pool  # type: ignore[union-attr]
            assert pool._max_connections == 1
            assert pool._requests == []
    assert all(http.is_closed for http in https)


@pytest.mark.parametrize(
    "kwargs",
    [{"max_concurrency": 0}, {"max_retries": -1}, {"deadline": 0}, {"rate_limit": 0.0}],
)
async def test_nonsense_knobs_are_config_errors(kwargs: dict[str, Any]) -> None:
    """Impossible limits fail at construction with a ConfigError."""
    with pytest.raises(ConfigError):
        _client(**kwargs)


@pytest.mark.parametrize(
    "kwargs", [{"max_retries": -1}, {"deadline": -5}, {"timeout": 0}, {"deadline": "soon"}]
)
async def test_nonsense_per_call_knobs_are_invalid_requests(
    router: respx.MockRouter, kwargs: dict[str, Any]
) -> None:
    """Bad per-call knobs are refused before anything is sent."""
    route = router.post(URL).respond(200, json=OK_JSON)
    async with _client() as client:
        with pytest.raises(InvalidRequestError):
            await client.generate("a cat", **kwargs)
    assert route.call_count == 0


async def test_deadline_cuts_off_a_provider_that_never_answers(router: respx.MockRouter) -> None:
    """A hung provider costs the caller the deadline, not the read timeout."""

    async def hang(request: httpx.Request) -> httpx.Response:
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    router.post(URL).mock(side_effect=hang)
    async with _client(deadline=0.05) as client:
        with pytest.raises(RequestTimeout, match="deadline") as caught:
            await client.generate("a cat")
        assert caught.value.attempts == 1
        with pytest.raises(RequestTimeout, match=r"0\.02 s deadline"):
            await client.generate("a cat", deadline=0.02)


async def test_deadline_spans_retries_and_backoff(router: respx.MockRouter) -> None:
    """Across attempts and real backoff sleeps, the call ends near its deadline."""
    route = router.post(URL).respond(503, headers={"retry-after": "0.02"})
    async with _client(deadline=0.15, max_retries=100) as client:
        start = anyio.current_time()
        with pytest.raises((ServerError, RequestTimeout)):
            await client.generate("a cat")
        spent = anyio.current_time() - start
    assert 2 <= route.call_count < 100
    assert spent < 1.0


async def test_per_call_timeout_reaches_the_request(router: respx.MockRouter) -> None:
    """generate(..., timeout=3) sets this call's httpx timeouts only."""
    route = router.post(URL).respond(200, json=OK_JSON)
    async with _client() as client:
        await client.generate("a cat", timeout=3)
        assert route.calls.last.request.extensions["timeout"]["read"] == 3
        await client.generate("a cat")
        assert route.calls.last.request.extensions["timeout"]["read"] == 120


class Gauge:
    """Counts requests in flight inside a respx side effect."""

    def __init__(self) -> None:
        self.now = 0
        self.peak = 0

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.now += 1
        self.peak = max(self.peak, self.now)
        for _ in range(3):  # let the other tasks run while this one is "in flight"
            await anyio.lowlevel.checkpoint()
        self.now -= 1
        return httpx.Response(200, json=OK_JSON)


async def test_concurrency_limit_holds_for_a_task_group(router: respx.MockRouter) -> None:
    """300 calls started together never have more than max_concurrency in flight."""
    gauge = Gauge()
    router.post(URL).mock(side_effect=gauge)
    async with _client(max_concurrency=5) as client, anyio.create_task_group() as tg:
        for i in range(300):
            tg.start_soon(client.generate, f"prompt {i}")
    assert gauge.peak == 5


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_concurrency_limit_holds_for_asyncio_gather(router: respx.MockRouter) -> None:
    """asyncio.gather of 2,000 generate() coroutines respects the bound, and all succeed."""
    gauge = Gauge()
    router.post(URL).mock(side_effect=gauge)
    async with _client(max_concurrency=8) as client:
        images = await asyncio.gather(*(client.generate(f"p {i}") for i in range(2000)))
    assert len(images) == 2000
    assert gauge.peak == 8


async def test_a_shared_limit_bounds_several_clients_together(router: respx.MockRouter) -> None:
    """Two clients sharing one ConcurrencyLimit(4) have at most 4 requests in flight."""
    gauge = Gauge()
    router.post(URL).mock(side_effect=gauge)
    shared = ConcurrencyLimit(4)
    async with (
        _client(max_concurrency=shared) as one,
        _client(max_concurrency=shared) as two,
        anyio.create_task_group() as tg,
    ):
        for i in range(50):
            tg.start_soon((one if i % 2 else two).generate, f"p {i}")
    assert gauge.peak == 4
    assert shared.in_flight == 0


async def test_backoff_sleep_holds_no_slot(router: respx.MockRouter) -> None:
    """While one call waits to retry, another call uses the only slot."""
    release = anyio.Event()
    sleeping = anyio.Event()

    async def parked_sleep(seconds: float) -> None:
        sleeping.set()
        await release.wait()

    route = router.post(URL).mock(
        side_effect=[
            httpx.Response(503),
            httpx.Response(200, json=OK_JSON),
            httpx.Response(200, json=OK_JSON),
        ]
    )
    limit = ConcurrencyLimit(1)
    retry = Retry(3, sleep=parked_sleep)
    async with _client(max_concurrency=limit, max_retries=retry) as client:
        results: list[GeneratedImage] = []

        async def first() -> None:
            results.append(await client.generate("first"))

        async with anyio.create_task_group() as tg:
            tg.start_soon(first)
            await sleeping.wait()
            assert limit.in_flight == 0
            results.append(await client.generate("second"))  # not blocked by the sleeper
            release.set()
    assert route.call_count == 3
    assert sorted(image.attempts for image in results) == [1, 2]


def test_rate_limit_spaces_reservations() -> None:
    """At 10 per second with a burst of 3, the fourth request waits 0.1 s, the fifth 0.2 s."""
    now = [100.0]
    limit = RateLimit(10, burst=3, clock=lambda: now[0])
    waits = [round(limit.reserve(), 6) for _ in range(5)]
    assert waits == [0.0, 0.0, 0.0, 0.1, 0.2]
    now[0] += 10  # idle time refills the burst, but never beyond it
    assert [round(limit.reserve(), 6) for _ in range(4)] == [0.0, 0.0, 0.0, 0.1]


def test_rate_limit_halves_after_429_and_recovers_on_success() -> None:
    """A 429 halves the rate (once a second at most); successes win it back gradually."""
    now = [0.0]
    limit = RateLimit(8, clock=lambda: now[0])
    limit.on_rate_limited()
    limit.on_rate_limited()  # same second: one cut only
    assert limit.current_rate == 4
    now[0] += 1.5
    limit.on_rate_limited()
    assert limit.current_rate == 2
    for _ in range(200):
        limit.on_success()
    assert limit.current_rate == 8
    for _ in range(20):
        now[0] += 2
        limit.on_rate_limited()
    assert limit.current_rate == 0.5  # the floor: rate / 16


async def test_rate_limit_middleware_sleeps_and_adapts(router: respx.MockRouter) -> None:
    """Through the client, the rate layer waits between attempts and slows after a 429."""
    slept: list[float] = []

    async def record(seconds: float) -> None:
        slept.append(seconds)
        await anyio.lowlevel.checkpoint()

    now = [0.0]
    limit = RateLimit(4, clock=lambda: now[0], sleep=record)
    router.post(URL).mock(
        side_effect=[httpx.Response(429), *[httpx.Response(200, json=OK_JSON)] * 3]
    )
    async with _client(rate_limit=limit, max_retries=Retry(3, sleep=record)) as client:
        await client.generate("first")
        await client.generate("second")
    assert limit.current_rate == pytest.approx(2.0 + 2 * 4 / 20)
    assert len(slept) >= 3  # backoff after the 429 plus spacing between attempts


# Cancellation over a real socket: a server that sends headers, then nothing, when the
# prompt asks it to stall, and answers like the emulator otherwise.

_EMULATOR = EmulatorApp()


async def _stalling_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await _EMULATOR(scope, receive, send)
        return
    body, more = b"", True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    if b"stall" in body:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await asyncio.sleep(3600)

    async def replay() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    await _EMULATOR(scope, replay, send)


@pytest.fixture(scope="module")
def stalling_url() -> Iterator[str]:
    with serve(_stalling_app) as url:
        yield url


async def test_cancelled_calls_leave_no_connection_checked_out(stalling_url: str) -> None:
    """After deadlines and outside cancel scopes hit calls mid-request, the pool is empty
    and the next request succeeds."""
    provider = Dataoorts(api_key=DEFAULT_API_KEY, base_url=f"{stalling_url}/api/v1")
    async with FluxClient(provider, max_concurrency=4, max_retries=0) as client:
        async with anyio.create_task_group() as tg:
            for i in range(12):
                tg.start_soon(_expect_timeout, client, i)
            with anyio.move_on_after(0.03):  # and one cancelled from outside
                await client.generate("stall until cancelled", deadline=10)
        assert pool_state(client)["requests"] == 0
        assert pool_state(client)["busy"] == 0
        assert client.concurrency.in_flight == 0
        image = await client.generate("the next request still works", deadline=10)
        assert image.media_type == "image/png"
        assert pool_state(client)["requests"] == 0


async def _expect_timeout(client: FluxClient, i: int) -> None:
    with pytest.raises(RequestTimeout):
        await client.generate(f"stall {i}", deadline=0.05)
