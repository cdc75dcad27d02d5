"""One worker process of the multi-process tests: ``python -m tests.scale._worker JSON``.

It sends ``n`` images through one FluxClient whose limit is a `SharedLimit`, prints a
line ``ready`` once connected, and at the end one JSON line of what it saw.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from flux_sdk import FluxClient, FluxError, RateLimitError, SharedLimit, Together

from ._host import KEY, PATH


async def main(settings: dict[str, Any]) -> None:
    limit = SharedLimit(
        settings["redis_url"],
        settings["name"],
        concurrency=settings.get("concurrency"),
        rate=settings.get("rate"),
        lease_seconds=settings.get("lease_seconds", 30.0),
    )
    provider = Together(KEY, base_url=settings["url"] + PATH)
    results = {"ok": 0, "rate_limited": 0, "failed": 0}
    async with FluxClient(
        provider,
        max_concurrency=limit if limit.concurrency is not None else 16,
        rate_limit=limit if limit.concurrency is None else None,
        max_retries=settings.get("max_retries", 0),
        deadline=settings.get("deadline"),
    ) as flux:

        async def one(k: int) -> None:
            try:
                await flux.generate(f"worker prompt {k}", seed=k, width=64, height=64)
                results["ok"] += 1
            except RateLimitError:
                results["rate_limited"] += 1
            except FluxError as exc:
                results["failed"] += 1
                print(f"failed: {exc}", file=sys.stderr, flush=True)

        print("ready", flush=True)
        await asyncio.gather(*(one(k) for k in range(settings["n"])))
    await limit.aclose()
    print(json.dumps({**results, "current_rate": limit.current_rate}), flush=True)


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))
