"""AiohttpTransport: the same client behaviour over aiohttp, on asyncio; refused on trio."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import anyio
import httpx
import pytest

from flux_sdk import (
    DEFAULT_TIMEOUT,
    AiohttpTransport,
    ConfigError,
    Dataoorts,
    FluxClient,
    GeneratedImage,
    GenerateRequest,
    RequestTimeout,
    Retry,
    TransportError,
)
from flux_sdk.emulator import DEFAULT_API_KEY, EmulatorApp, Fault, FaultPlan, render_png

from ._server import serve

pytestmark = pytest.mark.anyio
asyncio_only = pytest.mark.parametrize("anyio_backend", ["asyncio"])

SIZE = 40
APP = EmulatorApp(default_size=SIZE)


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with serve(APP) as base:
        yield base


@pytest.fixture(autouse=True)
def _no_faults() -> Iterator[None]:
    APP.faults = FaultPlan()
    yield
    APP.faults = FaultPlan()


async def no_sleep(seconds: float) -> None:
    await anyio.lowlevel.checkpoint()


@pytest.fixture
async def client(url: str) -> AsyncIterator[FluxClient]:
    http = httpx.AsyncClient(transport=AiohttpTransport(), timeout=DEFAULT_TIMEOUT)
    provider = Dataoorts(api_key=DEFAULT_API_KEY, base_url=f"{url}/api/v1")
    async with (
        http,
        FluxClient(provider, http_client=http, max_retries=Retry(8, sleep=no_sleep)) as flux,
    ):
        yield flux


def expected(prompt: str, seed: int) -> bytes:
    return render_png(prompt, seed=seed, steps=4, width=SIZE, height=SIZE)


@asyncio_only
async def test_images_arrive_byte_for_byte(client: FluxClient) -> None:
    """The same request gives the same image as over httpx's own transport."""
    image = await client.generate("a lighthouse at dusk", seed=5)
    assert image.data == expected("a lighthouse at dusk", 5)


@asyncio_only
async def test_a_faulty_provider_loses_no_image(client: FluxClient) -> None:
    """Resets, short bodies, 5xx, 429 and broken bodies are mapped, retried and survived."""
    kinds = [
        Fault.RESET,
        Fault.TRUNCATED,
        Fault.UNAVAILABLE,
        Fault.RATE_LIMIT,
        Fault.INVALID_JSON,
        Fault.INVALID_BASE64,
        Fault.HTML,
    ]
    APP.faults = FaultPlan(rate=0.3, kinds=kinds, seed=2, retry_after=0.01)
    items = [GenerateRequest(prompt=f"prompt {i}", seed=i) for i in range(60)]
    results = await client.generate_many(items)
    assert [r.data for r in results if isinstance(r, GeneratedImage)] == [
        expected(f"prompt {i}", i) for i in range(60)
    ]
    assert sum(APP.faults.injected.values()) > 0


@asyncio_only
async def test_a_cut_body_is_a_transport_error(client: FluxClient) -> None:
    """A body shorter than its Content-Length surfaces as a retryable TransportError."""
    APP.faults = FaultPlan([Fault.TRUNCATED])
    with pytest.raises(TransportError, match="RemoteProtocolError") as caught:
        await client.generate("cut short", max_retries=0)
    assert caught.value.retryable


@asyncio_only
async def test_a_stalled_body_is_a_request_timeout(client: FluxClient) -> None:
    """The read timeout of httpx's Timeout reaches aiohttp."""
    APP.faults = FaultPlan([Fault.STALL], stall_seconds=5)
    with pytest.raises(RequestTimeout):
        await client.generate("stalled", max_retries=0, timeout=0.2)


@asyncio_only
async def test_nothing_listening_is_a_transport_error() -> None:
    """A refused connection is a TransportError, like with httpx's transport."""
    with anyio.fail_after(10):
        http = httpx.AsyncClient(transport=AiohttpTransport())
        provider = Dataoorts(api_key=DEFAULT_API_KEY, base_url="http://127.0.0.1:9/api/v1")
        async with http, FluxClient(provider, http_client=http, max_retries=0) as flux:
            with pytest.raises(TransportError, match="failed"):
                await flux.generate("nobody home")


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_on_trio_it_is_refused_with_a_clear_error(url: str) -> None:
    """aiohttp needs asyncio: under trio the first request says so and sends nothing."""
    seen = APP.requests_seen
    http = httpx.AsyncClient(transport=AiohttpTransport())
    provider = Dataoorts(api_key=DEFAULT_API_KEY, base_url=f"{url}/api/v1")
    async with http, FluxClient(provider, http_client=http) as flux:
        with pytest.raises(ConfigError, match="asyncio only"):
            await flux.generate("on trio")
    assert APP.requests_seen == seen
