"""What tenacity costs `Retry` per call, against the plain loop it replaced, in one run.

python benchmarks/retry_overhead.py [--calls 20000] [--rounds 7]

Both engines run the same policy (`Retry`'s own decisions) around an attempt that
returns at once, or fails once and then succeeds (the injected sleep returns at once),
on asyncio. Rounds are interleaved; the figure is the median of the per-round medians,
in microseconds per call, and tenacity's extra cost as a share of a 1 s image.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import httpx

from flux_sdk import Dataoorts, FluxError, GenerateRequest, Retry, RetryBudget, ServerError
from flux_sdk._pipeline._call import Call


class LoopEngine:
    """The hand-written loop `Retry.run` was before tenacity came back (2026-11-30)."""

    def __init__(self, policy: Retry) -> None:
        self.policy = policy

    async def run(self, call: Call, kind: Any, attempt: Callable[[], Awaitable[Any]]) -> Any:
        retries = 0
        while True:
            try:
                return await attempt()
            except FluxError as exc:
                wait = self._next_wait(call, kind, exc, retries)
                if wait is None:
                    raise
                error = exc
            retries += 1
            call.emit("retry", attempt=call.attempts, error=error, delay=wait, step=kind)
            await self.policy.sleep(wait)

    def _next_wait(self, call: Call, kind: Any, error: FluxError, done: int) -> float | None:
        p = self.policy
        if done >= call.max_retries or not p.may_retry(kind, error):
            return None
        after = getattr(error, "retry_after", None)
        if call.failover and call.job is None and after is None:
            return None
        wait = float(after) if after is not None else p.delay(done + 1)
        deadline = anyio.current_effective_deadline()
        if not math.isinf(deadline) and anyio.current_time() + wait >= deadline:
            return None
        if not p.budget.try_spend():
            return None
        return wait


async def _no_sleep(seconds: float) -> None:
    return None


def _call() -> Call:
    return Call(
        GenerateRequest(prompt="a fox"),
        Dataoorts(api_key="sk-bench"),
        max_retries=3,
        deadline=None,
        timeout=httpx.Timeout(5.0),
    )


async def _per_call_us(run: Callable[..., Awaitable[Any]], calls: int, fail_first: bool) -> float:
    call = _call()
    state = {"n": 0}

    async def ok() -> int:
        return 1

    async def flaky() -> int:
        state["n"] += 1
        if state["n"] % 2:
            raise ServerError("boom", provider="dataoorts", status_code=500)
        return 1

    attempt = flaky if fail_first else ok
    start = time.perf_counter()
    for _ in range(calls):
        await run(call, "generate", attempt)
    return (time.perf_counter() - start) / calls * 1e6


async def main(calls: int, rounds: int) -> dict[str, Any]:
    policy = Retry(sleep=_no_sleep, budget=RetryBudget(ratio=1.0, capacity=1e12))
    loop = LoopEngine(policy)
    results: dict[str, list[float]] = {}
    for _ in range(rounds):
        for name, run in (("loop", loop.run), ("tenacity", policy.run)):
            for case, fail_first in (("success", False), ("one_retry", True)):
                us = await _per_call_us(run, calls, fail_first)
                results.setdefault(f"{name}_{case}", []).append(us)
    med = {k: statistics.median(v) for k, v in results.items()}
    spread = {k: (max(v) - min(v)) / statistics.median(v) for k, v in results.items()}
    extra = med["tenacity_success"] - med["loop_success"]
    return {
        "us_per_call": {k: round(v, 2) for k, v in med.items()},
        "spread": {k: round(v, 3) for k, v in spread.items()},
        "tenacity_extra_us_success": round(extra, 2),
        "tenacity_extra_us_one_retry": round(med["tenacity_one_retry"] - med["loop_one_retry"], 2),
        "share_of_1s_image": f"{extra / 1e6:.5%}",
        "calls": calls,
        "rounds": rounds,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main(args.calls, args.rounds))))
