"""routing.py's tail figure: one host with a heavy tail, hedged or not, run several times.

A p99 of one run of 1,000 calls is its 10th slowest call, so one run says little on a
shared machine: each setting is run ``repeats`` times, and the figure gives the median
and the spread of p99 / p50 over the runs, the most extra requests of any run, and the
machine's load average during the runs. The goal is met only if every run meets it.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio

from flux_sdk import FluxClient, FluxEvent, Hedge

TAIL_MEDIAN = 0.05
WORKERS = 4


@dataclass
class Tail:
    calls: int
    p50: float
    p99: float
    extra: int
    hedges: int
    failed: int
    load: float  # the 1-minute load average at the end of the run

    @property
    def ratio(self) -> float:
        return self.p99 / self.p50

    @property
    def ok(self) -> bool:
        return self.p99 <= 2 * self.p50 and self.extra <= 0.1 * self.calls


@dataclass
class Setting:
    routing: str
    label: str
    hedge: Callable[[], Hedge | None]  # a new one per run: a Hedge holds its tokens
    runs: list[Tail]


def settings() -> list[Setting]:
    """What the figure compares: no hedge, the defaults, and the older fixed percentiles."""
    return [
        Setting("failover", "off", lambda: None, []),
        Setting("failover", "`Hedge()`", Hedge, []),
        Setting("failover", "`Hedge(percentile=90)`", lambda: Hedge(percentile=90), []),
        Setting("failover", "`Hedge(max_extra=0.25)`", lambda: Hedge(max_extra=0.25), []),
        Setting("balanced", "off", lambda: None, []),
        Setting("balanced", "`Hedge()`", Hedge, []),
        Setting("balanced", "`Hedge(percentile=85)`", lambda: Hedge(percentile=85), []),
    ]


async def tail_run(
    hosts_type: Any, capacity: Any, prompts: Any, setting: Setting, calls: int
) -> Tail:
    slow = capacity(
        64, TAIL_MEDIAN, spread=0.1, tail=0.1, tail_factor=10, seed=len(setting.runs) + 1
    )
    hosts = hosts_type([slow, capacity(64, TAIL_MEDIAN, spread=0.1, seed=100 + len(setting.runs))])
    latencies: list[float] = []
    hedges = failed = 0

    def note(event: FluxEvent) -> None:
        nonlocal hedges
        hedges += event.kind == "hedge"

    with hosts.running():
        async with FluxClient(
            hosts.providers(), hedge=setting.hedge(), routing=setting.routing, on_event=note
        ) as client:
            todo = iter(prompts(calls))

            async def worker() -> None:
                nonlocal failed
                for prompt in todo:
                    start = time.perf_counter()
                    try:
                        await client.generate(prompt)
                    except Exception:
                        failed += 1
                        continue
                    latencies.append(time.perf_counter() - start)

            async with anyio.create_task_group() as group:
                for _ in range(WORKERS):
                    group.start_soon(worker)
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    requests = sum(c["requests"] for c in hosts.counters)
    return Tail(calls, cuts[49], cuts[98], requests - calls, hedges, failed, os.getloadavg()[0])


async def run_tails(
    hosts_type: Any, capacity: Any, prompts: Any, calls: int, repeats: int
) -> list[Setting]:
    """Every setting ``repeats`` times, interleaved so a busy minute hits them all."""
    chosen = settings()
    for _ in range(repeats):
        for setting in chosen:
            setting.runs.append(await tail_run(hosts_type, capacity, prompts, setting, calls))
            t = setting.runs[-1]
            print(
                f"tail {setting.routing} {setting.label}: p50 {t.p50 * 1000:.0f} ms, "
                f"p99 {t.p99 * 1000:.0f} ms ({t.ratio:.2f}x), extra {t.extra}, "
                f"hedges {t.hedges}, failed {t.failed}, load {t.load:.2f}",
                file=sys.stderr,
            )
    return chosen


def tail_lines(chosen: list[Setting], verdict: Callable[[bool], str]) -> list[str]:
    first = chosen[0].runs
    loads = [t.load for s in chosen for t in s.runs]
    lines = [
        "### A heavy tail, hedged",
        "",
        f"The first host's answers take {TAIL_MEDIAN * 1000:.0f} ms (lognormal, sigma 0.1), "
        "and 10% of them 10 times that; the second host is the same without the tail. "
        f"Each setting ran {len(first)} times ({first[0].calls:,} calls each, {WORKERS} at a "
        "time, the settings' runs interleaved; the 1-minute load average during them was "
        f"{min(loads):.1f} to {max(loads):.1f} on 2 cores shared with other work). Extra "
        "requests are the requests both hosts received, less one per call.",
        "",
        "| routing | hedge | p50 | p99 | p99 / p50: median (range) | extra requests "
        "(most in a run) | hedges started | failed | runs meeting the goal |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in chosen:
        runs = s.runs
        ratios = [t.ratio for t in runs]
        extra = max(t.extra for t in runs)
        lines.append(
            f"| {s.routing} | {s.label} | {statistics.median(t.p50 for t in runs) * 1000:.0f} ms | "
            f"{statistics.median(t.p99 for t in runs) * 1000:.0f} ms | "
            f"{statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f}x) | "
            f"{extra} ({extra / runs[0].calls:.1%}) | "
            f"{round(statistics.mean(t.hedges for t in runs))} | {sum(t.failed for t in runs)} | "
            f"{sum(t.ok for t in runs)} of {len(runs)} |"
        )
    lines += [
        "",
        "Goal: p99 at most 2x p50 with at most 10% extra requests, in every run: "
        + "; ".join(f"{s.routing} {s.label}: {verdict(all(t.ok for t in s.runs))}" for s in chosen)
        + ".",
    ]
    return lines
