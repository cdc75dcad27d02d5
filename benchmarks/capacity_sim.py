"""capacity.py's batch in virtual time: the same hosts, no machine in the way.

`capacity.py` runs a real server and a real client on a shared 2-core machine, so its
figures move by several percent from run to run. This runs `FluxClient` itself (its
batch, retries and limit) against a simulated host in virtual time, so a change to
`AdaptiveLimit` can be weighed in seconds, deterministically, at many capacities: the
host is an attempt middleware with ``replicas`` serving at once, lognormal service
times (median ``max(0.1, replicas / 250)`` s as in capacity.py, sigma 0.25), a FIFO
queue of a quarter of the replicas (at least 4), and a 429 with ``Retry-After: 0.5``
beyond it (``--queue-host``: a host that queues every request and never refuses);
``--lag`` adds a one-way delay to every request and answer (the network and the client's
own turnaround, which capacity.py has and this otherwise leaves out).
The clock moves to the next event once every task waits, so nothing is timed for real.

    python benchmarks/capacity_sim.py                          # 4 to 192 replicas
    python benchmarks/capacity_sim.py --capacities 48,192 --lag 0.005
    python benchmarks/capacity_sim.py --queue-host --capacities 8,16,24,48,96

For each capacity: the defaults' and the told client's completion time against the
least possible (prompts x median / replicas), their 429s, the time lost to the ramp
(the replicas idle before 95% of them were first busy, as a share of the least time),
and the most requests the host held at once (served and queued) over its replicas.
"""

from __future__ import annotations

import argparse
import base64
import heapq
import json
import math
import random
from typing import Any

import anyio
import anyio.lowlevel
import httpx

from flux_sdk import AdaptiveLimit, ConcurrencyLimit, Dataoorts, FluxClient, Retry
from flux_sdk.emulator import render_png

RETRY_AFTER = 0.5
SPREAD = 0.25
JSON = {"content-type": "application/json"}


class Host:
    """The simulated host and the clock: ``run`` moves time to the next service end or
    sleep's wake once every other task waits, until ``stop``."""

    def __init__(
        self, replicas: int, median: float, lag: float, seed: int = 17, refuses: bool = True
    ) -> None:
        self.replicas, self.queue = replicas, max(4, replicas // 4) if refuses else math.inf
        self.median, self.lag = median, lag
        self.random = random.Random(seed)
        self.now = 0.0
        self.busy = self.refused = self.peak = 0
        self.stop = False
        self.timeline: list[tuple[float, int]] = [(0.0, 0)]
        self._events: list[tuple[float, int, anyio.Event, bool]] = []
        self._queued: list[anyio.Event] = []
        self._seq = 0
        png = render_png("sim", seed=1, steps=4, width=32, height=32)
        self._body = json.dumps(
            {"success": True, "result": {"image_base64": base64.b64encode(png).decode()}}
        ).encode()

    def clock(self) -> float:
        return self.now

    def _at(self, when: float, event: anyio.Event, service: bool) -> None:
        self._seq += 1
        heapq.heappush(self._events, (when, self._seq, event, service))

    def _serve(self, done: anyio.Event) -> None:
        self.busy += 1
        self.timeline.append((self.now, self.busy))
        self._at(self.now + self.median * math.exp(self.random.gauss(0, SPREAD)), done, True)

    async def sleep(self, seconds: float) -> None:
        wake = anyio.Event()
        self._at(self.now + seconds, wake, False)
        await wake.wait()

    async def __call__(self, call: Any, call_next: Any) -> httpx.Response:
        if self.lag:
            await self.sleep(self.lag)
        done = anyio.Event()
        if self.busy < self.replicas:
            self._serve(done)
        elif len(self._queued) < self.queue:
            self._queued.append(done)
        else:
            self.refused += 1
            await anyio.lowlevel.checkpoint()
            if self.lag:
                await self.sleep(self.lag)
            headers = {"retry-after": str(RETRY_AFTER)}
            return httpx.Response(429, headers=headers, json={"error": "busy"})
        self.peak = max(self.peak, self.busy + len(self._queued))
        await done.wait()
        if self.lag:
            await self.sleep(self.lag)
        return httpx.Response(200, content=self._body, headers=JSON)

    async def run(self) -> None:
        while not self.stop:
            for _ in range(40):  # every other task runs until it waits
                await anyio.lowlevel.checkpoint()
            if not self._events:
                continue
            self.now, _, event, service = heapq.heappop(self._events)
            if service:
                self.busy -= 1
                if self._queued:
                    self._serve(self._queued.pop(0))
                self.timeline.append((self.now, self.busy))
            event.set()


async def batch(replicas: int, known: bool, lag: float, refuses: bool) -> dict[str, float]:
    median = max(0.1, replicas / 250)
    count = max(1200, 25 * replicas) if replicas >= 48 else 1000  # as capacity.py
    host = Host(replicas, median, lag, refuses=refuses)
    limit = ConcurrencyLimit(replicas) if known else AdaptiveLimit(clock=host.clock)
    client = FluxClient(
        Dataoorts(api_key="sk-sim"),
        max_concurrency=limit,
        attempt_middleware=[host],
        max_retries=Retry(3, sleep=host.sleep),  # the default's three, the sleep virtual
    )
    results: list[Any] = []
    async with client:

        async def run() -> None:
            results.extend(await client.generate_many([f"p {k}" for k in range(count)]))
            host.stop = True

        async with anyio.create_task_group() as group:
            group.start_soon(host.run)
            group.start_soon(run)
    best = count * median / replicas
    full = next((t for t, serving in host.timeline if serving >= 0.95 * replicas), host.now)
    idle = sum(
        (replicas - serving) * (min(t_next, full) - t)
        for (t, serving), (t_next, _) in zip(host.timeline, host.timeline[1:], strict=False)
        if t < full
    )
    return {
        "ratio": host.now / best,
        "refused": host.refused,
        "failed": sum(isinstance(r, Exception) for r in results),
        "ramp": idle / replicas / best,
        "peak": host.peak / replicas,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--capacities", default="4,8,12,16,24,48,96,192")
    parser.add_argument("--lag", type=float, default=0.0, help="one-way seconds, each way")
    parser.add_argument(
        "--queue-host", action="store_true", help="a host that queues all, never a 429"
    )
    options = parser.parse_args()
    refuses = not options.queue_host
    print(f"lag {options.lag * 1000:.0f} ms each way, {'429s' if refuses else 'no 429s'}")
    for replicas in (int(c) for c in options.capacities.split(",")):
        mine = anyio.run(batch, replicas, False, options.lag, refuses)
        told = anyio.run(batch, replicas, True, options.lag, refuses)
        print(
            f"{replicas:4} replicas  defaults {mine['ratio']:.3f}x ({mine['refused']:.0f} 429s, "
            f"{mine['failed']:.0f} failed, ramp {mine['ramp']:.1%}, held {mine['peak']:.2f}x)  "
            f"told the capacity {told['ratio']:.3f}x  defaults / told "
            f"{mine['ratio'] / told['ratio']:.3f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
