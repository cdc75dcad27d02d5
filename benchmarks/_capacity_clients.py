"""capacity.py's clients: each runs one batch against the emulator and returns (429s
received, items failed); flux_sdk's also record its limit and its 429s over time."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from bench import API_KEY, free_port

# The clients: each runs the whole batch and returns (429s received, failures).

# The client's limit every 5 ms of the latest flux_sdk run: (monotonic time, limit, in
# flight, and for an AdaptiveLimit its latest latencies' mean and base latency), and
# when its 429s came (monotonic: the server's clock too).
LIMITS: list[tuple[Any, ...]] = []
REFUSALS: list[float] = []

Run = Callable[[str, list[str], int], Awaitable[tuple[int, int]]]


async def flux_default(
    url: str, prompts: list[str], replicas: int, fixed: int | None = None
) -> tuple[int, int]:
    from flux_sdk import Dataoorts, FluxClient, FluxEvent

    refused = 0
    LIMITS.clear()
    REFUSALS.clear()

    def count(event: FluxEvent) -> None:
        nonlocal refused
        if event.kind == "attempt" and event.status_code == 429:
            refused += 1
            REFUSALS.append(time.monotonic())

    provider = Dataoorts(api_key=API_KEY, base_url=f"{url}/api/v1")
    async with FluxClient(provider, max_concurrency=fixed, on_event=count) as client:
        sampler = asyncio.ensure_future(sample(client.concurrency))
        try:
            results = await client.generate_many(prompts)
        finally:
            sampler.cancel()
    errors = [r for r in results if isinstance(r, Exception)]
    for error in errors[:3]:  # what was lost, for the trace
        print(f"      failed: {type(error).__name__}: {error}", flush=True)
    return refused, len(errors)


async def sample(limit: Any) -> None:
    """Every 5 ms, the client's limit and its requests in flight, into `LIMITS`; for an
    AdaptiveLimit also what it judges by (private: this is its own benchmark)."""
    while True:
        state = (getattr(limit, "_recent", None), getattr(limit, "_base", None))
        LIMITS.append((time.monotonic(), limit.limit, limit.in_flight, *state))
        await asyncio.sleep(0.005)


async def flux_known(url: str, prompts: list[str], replicas: int) -> tuple[int, int]:
    return await flux_default(url, prompts, replicas, fixed=replicas)


async def flux_fixed16(url: str, prompts: list[str], replicas: int) -> tuple[int, int]:
    return await flux_default(url, prompts, replicas, fixed=16)


async def gather16(url: str, prompts: list[str], replicas: int) -> tuple[int, int]:
    import httpx

    semaphore = asyncio.Semaphore(16)
    refused = failed = 0
    limits = httpx.Limits(max_connections=16, max_keepalive_connections=16)
    async with httpx.AsyncClient(limits=limits, timeout=300) as client:

        async def one(prompt: str) -> None:
            nonlocal refused, failed
            body = {"model": "black-forest-labs/flux-1-schnell", "data": {"prompt": prompt}}
            headers = {"Authorization": f"Bearer {API_KEY}"}
            for _ in range(10):
                async with semaphore:
                    response = await client.post(f"{url}/api/v1", json=body, headers=headers)
                if response.status_code != 429:
                    break
                refused += 1
                await asyncio.sleep(float(response.headers.get("retry-after", "1")))
            if response.status_code != 200:
                failed += 1
                return
            json.loads(response.content)["result"]["image_base64"]

        await asyncio.gather(*(one(p) for p in prompts))
    return refused, failed


async def openai16(url: str, prompts: list[str], replicas: int) -> tuple[int, int]:
    import httpx
    from openai import AsyncOpenAI

    refused = 0

    async def count(response: httpx.Response) -> None:
        nonlocal refused
        if response.status_code == 429:
            refused += 1

    semaphore = asyncio.Semaphore(16)
    http = httpx.AsyncClient(event_hooks={"response": [count]}, timeout=300)
    failed = 0
    async with AsyncOpenAI(base_url=f"{url}/v1", api_key=API_KEY, http_client=http) as client:

        async def one(prompt: str) -> None:
            nonlocal failed
            async with semaphore:
                try:
                    await client.images.generate(
                        model="flux-1-schnell", prompt=prompt, response_format="b64_json"
                    )
                except Exception:  # its RateLimitError once its 2 retries are spent
                    failed += 1

        await asyncio.gather(*(one(p) for p in prompts))
    return refused, failed


RUNS: dict[str, Run] = {
    "flux_default": flux_default,
    "flux_known": flux_known,
    "flux_fixed16": flux_fixed16,
    "gather16": gather16,
    "openai16": openai16,
}


def warm_up() -> None:
    """Load every client's modules before any is timed: a batch's time is not its
    process's imports (import_time.py measures those), and only the first client run
    would pay them. For flux_sdk that is what a first batch loads on first use too (the
    batch engine, the provider's wire code): one item against a closed port."""
    import httpx  # noqa: F401
    import openai  # noqa: F401

    from flux_sdk import Dataoorts, FluxClient

    async def one() -> None:
        provider = Dataoorts(api_key=API_KEY, base_url=f"http://127.0.0.1:{free_port()}/api/v1")
        async with FluxClient(provider, max_retries=0) as client:
            await client.generate_many(["warm-up"])

    asyncio.run(one())
