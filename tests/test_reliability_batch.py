"""Batches to disk against a misbehaving provider on a real loopback server (issue 5).

Quick counts here; ``FLUX_SDK_RELIABILITY=full`` (``nox -s reliability``) runs 1,000
prompts per scenario and records the figures for docs/reliability.md.
"""

from __future__ import annotations

import os
import re
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path

import anyio
import httpx
import pytest

from flux_sdk import (
    AuthenticationError,
    Dataoorts,
    FluxClient,
    FluxError,
    GeneratedImage,
    GenerateRequest,
    Retry,
    RetryBudget,
    ServerError,
)
from flux_sdk.emulator import DEFAULT_API_KEY, EmulatorApp, Fault, FaultPlan, render_png

from ._reliability import count, record
from ._server import serve

pytestmark = pytest.mark.anyio

SIZE = 48
PROMPTS = count(quick=120, full=1000)
# Every kind the issue lists; SLOW is left out: it is a deadline's business, not a batch's.
FAULTS = [
    Fault.RATE_LIMIT,
    Fault.SERVER_ERROR,
    Fault.BAD_GATEWAY,
    Fault.UNAVAILABLE,
    Fault.RESET,
    Fault.TRUNCATED,
    Fault.STALL,
    Fault.INVALID_JSON,
    Fault.INVALID_BASE64,
    Fault.HTML,
]
READ_TIMEOUT = 0.5  # a stalled body (2 s) is cut after this
APP = EmulatorApp(default_size=SIZE)


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with serve(APP) as base:
        yield base


@pytest.fixture(autouse=True)
def _fresh_app() -> Iterator[None]:
    APP.faults = FaultPlan()
    APP.api_key = DEFAULT_API_KEY
    yield
    APP.faults = FaultPlan()
    APP.api_key = DEFAULT_API_KEY


async def no_sleep(seconds: float) -> None:
    """Backoff without the wait: the attempts are what is measured, not the clock."""
    await anyio.lowlevel.checkpoint()


def prompt(i: int) -> str:
    return f"a lighthouse on a cliff, study {i}"


def items(n: int) -> list[GenerateRequest]:
    return [GenerateRequest(prompt=prompt(i), seed=i) for i in range(n)]


def client(
    url: str, retries: int, budget: RetryBudget | None = None, read: float = 10.0
) -> FluxClient:
    provider = Dataoorts(api_key=DEFAULT_API_KEY, base_url=f"{url}/api/v1")
    return FluxClient(
        provider,
        max_retries=Retry(retries, sleep=no_sleep, budget=budget),
        max_concurrency=32,
        timeout=httpx.Timeout(10.0, read=read),
    )


def odd(results: Sequence[object]) -> Counter[str]:
    """What a failed assertion should show: each kind of result, with its attempts."""
    return Counter(f"{type(r).__name__} x{getattr(r, 'attempts', '?')}" for r in results)


def audit(folder: Path) -> dict[str, int]:
    """What is on disk: correct files, wrong ones, duplicates per index, leftovers."""
    names = os.listdir(folder)
    images = [n for n in names if re.fullmatch(r"\d{6}-[a-z0-9-]*\.png", n)]
    per_index = Counter(int(n[:6]) for n in images)
    correct = sum(
        (folder / n).read_bytes()
        == render_png(prompt(int(n[:6])), seed=int(n[:6]), steps=4, width=SIZE, height=SIZE)
        for n in images
    )
    return {
        "files": len(images),
        "correct": correct,
        "duplicates": sum(c - 1 for c in per_index.values()),
        "leftovers": len(names) - len(images) - 1,  # everything but images and the manifest
    }


async def test_a_batch_with_30_percent_faults_saves_every_image_once(
    url: str, tmp_path: Path, anyio_backend: str
) -> None:
    """Every fault kind at 30%: every file correct, none twice, no temp files, few retries."""
    APP.faults = FaultPlan(rate=0.3, kinds=FAULTS, seed=4, retry_after=0.01, stall_seconds=2.0)
    start = time.perf_counter()
    # A short read timeout, so stalled bodies are cut quickly (on a loaded machine it
    # also cuts a few slow answers; those are retried like any timeout).
    # A budget larger than the default: a pause of the shared machine can time out a
    # burst of answers at once, and this test is about the files, not the budget (the
    # outage test below holds the default budget to its bound).
    budget = RetryBudget(capacity=50)
    async with client(url, retries=10, read=READ_TIMEOUT, budget=budget) as flux:
        results = await flux.generate_many(items(PROMPTS), save_dir=tmp_path, keep_images=False)
    seconds = time.perf_counter() - start
    errors = [r for r in results if isinstance(r, FluxError)]
    found = audit(tmp_path)
    attempts = APP.faults.requests
    record(
        f"batch.faults30.{anyio_backend}",
        requests=PROMPTS,
        attempts=attempts,
        faults=sum(APP.faults.injected.values()),
        failed=len(errors),
        seconds=round(seconds, 2),
        **found,
    )
    assert errors == []
    assert found == {"files": PROMPTS, "correct": PROMPTS, "duplicates": 0, "leftovers": 0}
    assert set(APP.faults.injected) == set(FAULTS)
    assert attempts <= 1.6 * PROMPTS


async def test_a_batch_in_a_total_outage_ends_quickly_within_the_budget(
    url: str, tmp_path: Path, anyio_backend: str
) -> None:
    """Every answer a 503: every item an error, attempts <= 1.2 x requests + the sack's
    size (its capacity, or a token per request of the most in flight at once)."""
    APP.faults.outage(Fault.UNAVAILABLE)
    budget = RetryBudget()
    start = time.perf_counter()
    async with client(url, retries=10, budget=budget) as flux:
        results = await flux.generate_many(items(PROMPTS), save_dir=tmp_path)
    seconds = time.perf_counter() - start
    attempts = APP.faults.requests
    found = audit(tmp_path)
    record(
        f"batch.outage.{anyio_backend}",
        requests=PROMPTS,
        attempts=attempts,
        failed=sum(isinstance(r, ServerError) for r in results),
        seconds=round(seconds, 2),
        **found,
    )
    assert all(isinstance(r, ServerError) for r in results), odd(results)
    assert found["files"] == 0
    assert found["leftovers"] == 0
    # The sack holds a token per request of the most in flight at once (32), or capacity.
    assert attempts <= (1 + budget.ratio) * PROMPTS + max(budget.capacity, budget.size)


async def test_a_fatal_error_is_never_retried(url: str, tmp_path: Path, anyio_backend: str) -> None:
    """A 401 ends each item after exactly one attempt."""
    APP.api_key = "a-key-nobody-has"
    start = time.perf_counter()
    async with client(url, retries=10) as flux:
        results = await flux.generate_many(items(PROMPTS), save_dir=tmp_path)
    seconds = time.perf_counter() - start
    attempts = APP.faults.requests
    record(
        f"batch.unauthorized.{anyio_backend}",
        requests=PROMPTS,
        attempts=attempts,
        failed=sum(isinstance(r, AuthenticationError) for r in results),
        seconds=round(seconds, 2),
        **audit(tmp_path),
    )
    assert all(isinstance(r, AuthenticationError) and r.attempts == 1 for r in results), odd(
        results
    )
    assert attempts == PROMPTS


async def test_a_rerun_after_faults_only_pays_for_what_failed(url: str, tmp_path: Path) -> None:
    """With too few retries some items fail; the rerun sends exactly those again."""
    APP.faults = FaultPlan(rate=0.5, kinds=[Fault.UNAVAILABLE, Fault.HTML], seed=1)
    async with client(url, retries=0) as flux:
        first = await flux.generate_many(items(40), save_dir=tmp_path)
    failed = sum(isinstance(r, FluxError) for r in first)
    assert 0 < failed < 40
    APP.faults = FaultPlan()
    async with client(url, retries=0) as flux:
        second = await flux.generate_many(items(40), save_dir=tmp_path)
    assert APP.faults.requests == failed
    assert all(isinstance(r, GeneratedImage) for r in second)
    found = audit(tmp_path)
    assert found == {"files": 40, "correct": 40, "duplicates": 0, "leftovers": 0}
