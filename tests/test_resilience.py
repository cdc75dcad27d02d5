"""The whole client against the emulator's faults over a real loopback socket."""

from __future__ import annotations

from collections.abc import Iterator

import anyio
import httpx
import pytest

from flux_sdk import (
    AuthenticationError,
    Baseten,
    Dataoorts,
    FluxClient,
    FluxError,
    RateLimit,
    RequestTimeout,
    Retry,
    RetryBudget,
    ServerError,
)
from flux_sdk.emulator import DEFAULT_API_KEY, EmulatorApp, Fault, FaultPlan, render_png

from ._reliability import pool_state
from ._server import serve
from ._sleeps import Sleeps

pytestmark = pytest.mark.anyio

# Small images keep a fault test to milliseconds.
APP = EmulatorApp(default_size=64)


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with serve(APP) as base:
        yield base


@pytest.fixture(autouse=True)
def _no_faults() -> Iterator[None]:
    APP.faults = FaultPlan()
    yield
    APP.faults = FaultPlan()


def _dataoorts(
    url: str, sleeps: Sleeps | None = None, retries: int = 3, **kwargs: object
) -> FluxClient:
    provider = Dataoorts(api_key=DEFAULT_API_KEY, base_url=f"{url}/api/v1")
    retry = Retry(retries, sleep=sleeps or Sleeps(), budget=kwargs.pop("budget", None))  # type: ignore[arg-type]
    return FluxClient(provider, max_retries=retry, **kwargs)  # type: ignore[arg-type]


EXPECTED = render_png("a lighthouse at dusk", seed=5, steps=4, width=64, height=64)


@pytest.mark.parametrize(
    "fault",
    [
        Fault.RATE_LIMIT,
        Fault.SERVER_ERROR,
        Fault.BAD_GATEWAY,
        Fault.UNAVAILABLE,
        Fault.RESET,
        Fault.TRUNCATED,
        Fault.INVALID_JSON,
        Fault.INVALID_BASE64,
        Fault.HTML,
    ],
)
async def test_each_fault_is_retried_into_the_right_image(url: str, fault: Fault) -> None:
    """Two faults in a row, then a normal answer: the caller just gets the correct image."""
    APP.faults = FaultPlan([fault, fault], retry_after=0.01)
    async with _dataoorts(url) as client:
        image = await client.generate("a lighthouse at dusk", seed=5)
    assert image.data == EXPECTED
    assert image.attempts == 3
    assert APP.faults.injected[fault] == 2


async def test_a_stalled_body_is_cut_by_the_read_timeout_and_retried(url: str) -> None:
    """A server that sends headers then nothing costs one read timeout, not the call."""
    APP.faults = FaultPlan([Fault.STALL], stall_seconds=30)
    async with _dataoorts(url, timeout=httpx.Timeout(5, read=0.1)) as client:
        image = await client.generate("a lighthouse at dusk", seed=5)
    assert image.data == EXPECTED
    assert image.attempts == 2


async def test_a_trickling_body_is_cut_by_the_deadline(url: str) -> None:
    """A body that keeps arriving a few bytes at a time is stopped by the deadline."""
    APP.faults = FaultPlan(
        script=[], rate=1.0, kinds=[Fault.SLOW], slow_interval=0.01, slow_chunk=1
    )
    async with _dataoorts(url, deadline=0.3) as client:
        start = anyio.current_time()
        with pytest.raises(RequestTimeout, match="deadline"):
            await client.generate("a lighthouse at dusk", seed=5)
        assert anyio.current_time() - start < 2
        assert pool_state(client)["requests"] == 0
        assert pool_state(client)["busy"] == 0


async def test_retry_after_from_the_server_is_waited(url: str) -> None:
    """The emulator's Retry-After reaches the backoff unchanged."""
    APP.faults = FaultPlan([Fault.RATE_LIMIT], retry_after=0.25)
    sleeps = Sleeps()
    async with _dataoorts(url, sleeps) as client:
        await client.generate("a lighthouse at dusk", seed=5)
    assert sleeps.delays == [0.25]


async def test_a_refused_key_is_tried_exactly_once(url: str) -> None:
    """401 is final: one request reaches the server, whatever max_retries says."""
    provider = Baseten(api_key="sk-wrong-key", base_url=url)
    async with FluxClient(provider, max_retries=Retry(5, sleep=Sleeps())) as client:
        with pytest.raises(AuthenticationError):
            await client.generate("a lighthouse at dusk")
    assert APP.faults.requests == 1


async def test_total_outage_attempts_stay_within_the_budget(url: str) -> None:
    """100 calls to an emulator answering 503 to everything make at most 1.2 x 100 + 10."""
    APP.faults = FaultPlan()
    APP.faults.outage(Fault.UNAVAILABLE)
    failures: list[FluxError] = []
    async with _dataoorts(url, budget=RetryBudget(), max_concurrency=8) as client:

        async def one(i: int) -> None:
            try:
                await client.generate(f"prompt {i}")
            except FluxError as exc:
                failures.append(exc)

        async with anyio.create_task_group() as tg:
            for i in range(100):
                tg.start_soon(one, i)
    assert len(failures) == 100
    assert all(isinstance(f, ServerError) for f in failures)
    assert APP.faults.requests <= 1.2 * 100 + 10


async def test_a_flaky_provider_loses_no_image(url: str) -> None:
    """With 30% of answers faulty, 60 concurrent calls all return their correct image."""
    kinds = [k for k in Fault if k not in (Fault.STALL, Fault.SLOW)]
    APP.faults = FaultPlan(rate=0.3, kinds=kinds, seed=7, retry_after=0.01)
    results: dict[int, bytes] = {}
    # With 3 retries a call still fails 0.3**4 = 0.8% of the time; 10 make it 2e-6.
    async with _dataoorts(url, retries=10, max_concurrency=8) as client:

        async def one(i: int) -> None:
            image = await client.generate(f"prompt {i}", seed=i + 1)
            results[i] = image.data

        async with anyio.create_task_group() as tg:
            for i in range(60):
                tg.start_soon(one, i)
    assert sorted(results) == list(range(60))
    for i in (0, 17, 59):
        assert results[i] == render_png(f"prompt {i}", seed=i + 1, steps=4, width=64, height=64)
    assert sum(APP.faults.injected.values()) > 0
    assert APP.faults.requests <= 1.6 * 60


async def test_rate_limit_slows_down_after_real_429s(url: str) -> None:
    """Real 429s from the server halve the client's rate, and successes restore it."""
    APP.faults = FaultPlan([Fault.RATE_LIMIT], retry_after=0.01)
    limit = RateLimit(50, burst=5)
    async with _dataoorts(url, rate_limit=limit) as client:
        await client.generate("a lighthouse at dusk", seed=5)
        assert limit.current_rate == 25 + 50 / 20
        for i in range(10):
            await client.generate(f"p {i}", seed=1)
    assert limit.current_rate == 50
