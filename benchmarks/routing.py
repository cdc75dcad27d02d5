"""Routing over several hosts, measured against emulated hosts on loopback (issue 14).

Each host is an ``EmulatorApp`` on a port of its own, served by uvicorn in a separate
process (``_hosts.py``), so the client's process measures only the client. Each route
is a different provider (Dataoorts, Together) pointed at its own host. Three figures:

1. outage: one host answers 503 to everything for a whole batch of 1,000 prompts;
   every prompt must succeed, and the dead host should see about the breaker's
   threshold of attempts (plus a probe per cooldown that passes).
2. tail: one host with a heavy tail (10% of answers take 10x the median) and a healthy
   one: p50, p99 and extra requests with hedging off and on, each setting run several
   times (``--repeats``) so the spread of p99 shows (``_routing_tail.py``).
3. capacity: hosts with 8 and 24 replicas: a batch's throughput against the sum of the
   two, with the defaults and with ``routing="balanced"`` and per-route limits.

The figures replace the part of docs/routing.md between its ``routing-figures``
markers; the rest of that page is prose written by hand.

    python benchmarks/routing.py              # about 12 minutes on 2 cores
    python benchmarks/routing.py --quick      # a smoke test; prints, writes no page
    python benchmarks/routing.py --only tail  # one figure; prints, writes no page
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import re
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
from _routing_tail import Setting, run_tails, tail_lines

from flux_sdk import (
    Dataoorts,
    FluxClient,
    GeneratedImage,
    Retry,
    RetryBudget,
    Route,
    Together,
)
from flux_sdk.emulator import DEFAULT_API_KEY

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
PAGE = ROOT / "docs" / "routing.md"
START, END = "<!-- routing-figures: start -->", "<!-- routing-figures: end -->"


class Hosts:
    """Emulated hosts in a process of their own; ``counters`` once they have stopped."""

    def __init__(self, specs: Sequence[dict[str, Any]]) -> None:
        self.specs = list(specs)
        self.urls: list[str] = []
        self.counters: list[dict[str, Any]] = []

    @contextlib.contextmanager
    def running(self) -> Iterator[Hosts]:
        command = [sys.executable, str(HERE / "_hosts.py"), json.dumps(self.specs)]
        process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT
        )
        assert process.stdin is not None
        assert process.stdout is not None
        try:
            ports = json.loads(process.stdout.readline())
            self.urls = [f"http://127.0.0.1:{port}" for port in ports]
            yield self
            process.stdin.write("stop\n")
            process.stdin.flush()
            self.counters = json.loads(process.stdout.readline())
        finally:
            if process.poll() is None:
                with contextlib.suppress(OSError):
                    process.stdin.close()
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()

    def providers(self) -> list[Dataoorts | Together]:
        """One provider per host, each a different one (routes need distinct names)."""
        first, second = self.urls[:2]
        return [
            Dataoorts(DEFAULT_API_KEY, base_url=f"{first}/api/v1"),
            Together(DEFAULT_API_KEY, base_url=f"{second}/together"),
        ]


def capacity(replicas: int, median: float, **more: Any) -> dict[str, Any]:
    return {"capacity": {"replicas": replicas, "median": median, **more}}


def prompts(count: int) -> list[str]:
    return [f"a lighthouse in a storm, study {i}" for i in range(count)]


# 1. One host down


@dataclass
class Outage:
    label: str
    calls: int
    succeeded: int
    wall: float
    dead_attempts: int
    healthy_attempts: int
    cooldowns: int  # cooldowns that passed during the batch (each allows one probe)
    threshold: int
    circuit: str


async def outage_batch(label: str, calls: int, **options: Any) -> Outage:
    hosts = Hosts([{"outage": "503"}, capacity(64, 0.02, spread=0.2, seed=3)])
    with hosts.running():
        async with FluxClient(hosts.providers(), **options) as client:
            threshold = client._router.routes[0].breaker.failures if client._router else 0
            cooldown = client._router.routes[0].breaker.cooldown if client._router else 0.0
            start = time.perf_counter()
            results = await client.generate_many(prompts(calls))
            wall = time.perf_counter() - start
            circuit = client.routes[0].circuit
    dead, healthy = hosts.counters
    return Outage(
        label=label,
        calls=calls,
        succeeded=sum(isinstance(r, GeneratedImage) for r in results),
        wall=wall,
        dead_attempts=dead["requests"],
        healthy_attempts=healthy["requests"],
        cooldowns=int(wall // cooldown) if cooldown else 0,
        threshold=threshold,
        circuit=circuit,
    )


# 2. A heavy tail, hedged or not: _routing_tail.py


# 3. Two hosts' capacity


@dataclass
class Throughput:
    label: str
    calls: int
    wall: float
    ideal: float  # images/s the two hosts can serve together
    served: list[int]
    max_queued: list[int]
    failed: int

    @property
    def rate(self) -> float:
        return self.calls / self.wall


SMALL, LARGE, SERVICE, SPREAD = 8, 24, 0.4, 0.25


async def capacity_batch(label: str, calls: int, limits: bool, **options: Any) -> Throughput:
    hosts = Hosts(
        [
            capacity(SMALL, SERVICE, spread=SPREAD, overflow="queue", seed=4),
            capacity(LARGE, SERVICE, spread=SPREAD, overflow="queue", seed=5),
        ]
    )
    with hosts.running():
        small, large = hosts.providers()
        routes: list[Any] = [small, large]
        if limits:
            routes = [Route(small, max_concurrency=SMALL), Route(large, max_concurrency=LARGE)]
        async with FluxClient(routes, **options) as client:
            start = time.perf_counter()
            results = await client.generate_many(prompts(calls))
            wall = time.perf_counter() - start
    mean_service = SERVICE * (2.718281828459045 ** (SPREAD**2 / 2))  # a lognormal's mean
    return Throughput(
        label=label,
        calls=calls,
        wall=wall,
        ideal=(SMALL + LARGE) / mean_service,
        served=[c.get("served", 0) for c in hosts.counters],
        max_queued=[c.get("max_queued", 0) for c in hosts.counters],
        failed=sum(not isinstance(r, GeneratedImage) for r in results),
    )


# The page


def machine() -> list[str]:
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.MULTILINE)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    from flux_sdk import __version__

    return [
        f"- CPU: {model[1].strip() if model else platform.processor() or 'unknown'}, "
        f"{cores} cores available",
        f"- OS: {platform.platform()}; Python {platform.python_version()}; flux_sdk {__version__}",
        "- Hosts: one `EmulatorApp` per host under uvicorn, all in one process of their own,"
        " on loopback; the client runs on asyncio in the benchmark's process",
    ]


def verdict(ok: bool) -> str:
    return "**pass**" if ok else "**miss**"


def figures(
    outages: list[Outage],
    tails: list[Setting],
    batches: list[Throughput],
    command: str,
    elapsed: float,
) -> list[str]:
    outage = outages[0]
    lines = [
        "## Figures",
        "",
        "Written by `benchmarks/routing.py`; do not edit by hand.",
        "",
        *machine(),
        f"- Command: `{command}` ({elapsed:.0f} s)",
        f"- Date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
        "",
        "### One host down",
        "",
        f"`FluxClient([Dataoorts(...), Together(...)])`, failover, the default "
        f"`CircuitBreaker()` ({outage.threshold} failures, 30 s cooldown), "
        f"`generate_many` of {outage.calls:,} prompts; the first host answers 503 to "
        "every request, the second serves in about 20 ms.",
        "",
        "| client | succeeded | attempts at the dead host | breaker threshold + probes | "
        "attempts at the healthy host | circuit at the end | batch time |",
        "|---|---:|---:|---:|---:|---|---:|",
    ]
    for o in outages:
        lines.append(
            f"| {o.label} | {o.succeeded:,} of {o.calls:,} | {o.dead_attempts} | "
            f"{o.threshold + o.cooldowns} | {o.healthy_attempts:,} | {o.circuit} | "
            f"{o.wall:.1f} s |"
        )
    lines += [
        "",
        "Goals: every prompt succeeds; the dead host sees at most the threshold plus a "
        "probe per cooldown: "
        + "; ".join(
            f"{o.label}: {verdict(o.succeeded == o.calls)}, "
            f"{verdict(o.dead_attempts <= o.threshold + o.cooldowns)}"
            for o in outages
        )
        + ".",
        "",
    ]
    if tails:
        lines += [*tail_lines(tails, verdict), ""]
    lines += [
        "### Two hosts' capacity",
        "",
        f"Hosts with {SMALL} and {LARGE} replicas, each answer {SERVICE * 1000:.0f} ms "
        f"(lognormal, sigma {SPREAD}); a request beyond the replicas waits in the host's "
        f'queue (`overflow="queue"`). Together they serve {batches[0].ideal:.0f} images/s. '
        f"`generate_many` of {batches[0].calls:,} prompts.",
        "",
        "| client | images/s | of both hosts' capacity | served (8 / 24) | "
        "most queued at a host (8 / 24) | failed |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for b in batches:
        lines.append(
            f"| {b.label} | {b.rate:.0f} | {b.rate / b.ideal:.2f}x | "
            f"{b.served[0]} / {b.served[1]} | {b.max_queued[0]} / {b.max_queued[1]} | "
            f"{b.failed} |"
        )
    lines += [
        "",
        "Goal: at least 0.85x of both hosts' capacity: "
        + "; ".join(f"{b.label}: {verdict(b.rate >= 0.85 * b.ideal)}" for b in batches)
        + ".",
    ]
    return lines


def write_page(lines: list[str], page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    head, found, rest = text.partition(START)
    _, found_end, tail = rest.partition(END)
    if not found or not found_end:
        raise SystemExit(f"{page} lacks the {START} and {END} markers")
    page.write_text(head + START + "\n\n" + "\n".join(lines) + "\n\n" + END + tail, "utf-8")


async def run(quick: bool, only: str | None, repeats: int) -> Results:
    outages: list[Outage] = []
    tails: list[Setting] = []
    batches: list[Throughput] = []
    calls = 200 if quick else 1000
    options: dict[str, Any]
    for label, options in (
        ("defaults", {}),
        (
            "`Retry(budget=RetryBudget(capacity=32))`",
            {"max_retries": Retry(budget=RetryBudget(capacity=32))},
        ),
    ):
        if only in (None, "outage"):
            outages.append(await outage_batch(label, calls, **options))
            print(outages[-1], file=sys.stderr)
    if only in (None, "tail"):
        tails = await run_tails(Hosts, capacity, prompts, 300 if quick else 1000, repeats)
    batch_calls = 200 if quick else 800
    for label, limits, options in (
        ("defaults (failover, 16 per route)", False, {}),
        ('`routing="balanced"`, 16 per route', False, {"routing": "balanced"}),
        (
            '`routing="balanced"`, `Route(max_concurrency=8 / 24)`',
            True,
            {"routing": "balanced"},
        ),
    ):
        if only in (None, "capacity"):
            batches.append(await capacity_batch(label, batch_calls, limits, **options))
            print(batches[-1], f"{batches[-1].rate / batches[-1].ideal:.2f}x", file=sys.stderr)
    return outages, tails, batches


Results = tuple[list[Outage], list[Setting], list[Throughput]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke test; writes no page")
    parser.add_argument("--page", type=Path, default=PAGE, help="the page to write")
    parser.add_argument(
        "--only", choices=("outage", "tail", "capacity"), help="one figure; printed, no page"
    )
    parser.add_argument("--repeats", type=int, help="runs of each tail setting (default 5)")
    args = parser.parse_args(argv)
    repeats = args.repeats or (2 if args.quick else 5)
    start = time.perf_counter()
    outages, tails, batches = anyio.run(run, args.quick, args.only, repeats)
    if args.only == "tail":
        print("\n".join(tail_lines(tails, verdict)))
        return 0
    if args.only is not None:
        return 0
    command = "python benchmarks/routing.py" + (" --quick" if args.quick else "")
    if args.repeats:
        command += f" --repeats {args.repeats}"
    lines = figures(outages, tails, batches, command, time.perf_counter() - start)
    if args.quick:
        print("\n".join(lines))
    else:
        write_page(lines, args.page)
        print(f"wrote {args.page}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
