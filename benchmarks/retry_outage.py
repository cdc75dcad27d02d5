"""Attempts made by N calls against a provider that is down (every answer a 503).

The emulator runs on a real loopback socket; backoff sleeps are skipped so the run takes
seconds. The goal (issue 3): attempts <= 1.2 x calls + the retry budget's floor.

    python benchmarks/retry_outage.py [CALLS]
"""

from __future__ import annotations

import sys

import anyio

from flux_sdk import Dataoorts, FluxClient, FluxError, Retry, RetryBudget
from flux_sdk.emulator import DEFAULT_API_KEY, EmulatorApp, Fault

sys.path.insert(0, ".")
from tests._server import serve


async def no_sleep(seconds: float) -> None:
    await anyio.lowlevel.checkpoint()


async def run(url: str, calls: int, budget: RetryBudget) -> int:
    provider = Dataoorts(api_key=DEFAULT_API_KEY, base_url=f"{url}/api/v1")
    failed = 0
    async with FluxClient(provider, max_retries=Retry(3, sleep=no_sleep, budget=budget)) as client:

        async def one(i: int) -> None:
            nonlocal failed
            try:
                await client.generate(f"prompt {i}")
            except FluxError:
                failed += 1

        async with anyio.create_task_group() as tg:
            for i in range(calls):
                tg.start_soon(one, i)
    return failed


def main() -> None:
    calls = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    app = EmulatorApp(default_size=64)
    app.faults.outage(Fault.UNAVAILABLE)
    budget = RetryBudget()
    with serve(app) as url:
        failed = anyio.run(run, url, calls, budget)
    attempts = app.faults.requests
    bound = (1 + budget.ratio) * calls + budget.floor
    print(f"calls {calls}, failed {failed}, attempts {attempts}, bound {bound:.0f}")
    print(f"attempts / calls: {attempts / calls:.3f}")


if __name__ == "__main__":
    main()
