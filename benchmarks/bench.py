"""flux_sdk against a hand-written floor, raw httpx, raw aiohttp and openai-python (issues 6, 17).

One run starts the emulator as a real HTTP server on loopback in its own process, then
measures seven clients on the same workloads, taking turns (each repeat rotates the
order, so drift and noise fall on all of them alike):

0. the floor: asyncio streams, one write per request, ``readexactly`` of Content-Length,
   pydantic-core and pybase64 (see ``_worker.floor``): the least a client can do;
1. raw httpx: one ``AsyncClient``, pool sized to the concurrency, ``json.loads`` and
   ``base64.b64decode`` of the Dataoorts answer;
2. raw aiohttp with the same parsing;
3. openai-python, ``AsyncOpenAI(...).images.generate(..., response_format="b64_json")``
   against the emulator's OpenAI-style route, decoded with ``base64.b64decode``;
4. flux_sdk, ``FluxClient(Dataoorts(...), max_concurrency=N)``: the default stack;
5. the same over the optional ``AiohttpTransport`` (asyncio only);
6. flux_sdk's default stack again, under trio.

Workloads: small answers (a 1.5 KB image, about 2 KB of JSON) and realistic ones (a
2 MiB image, about 2.8 MB of JSON, each image written to disk), at concurrency 1, 16,
64 and 256; the CPU per 2 MiB image also goes to a plot, docs/img/cpu-per-image.png.
Each measurement runs in a fresh process (``_worker.py``): client CPU time per image
comes from ``time.process_time()`` in that process only, peak RSS from its ``ru_maxrss``;
the server's CPU is read from ``/proc`` separately. Import times are medians of fresh
interpreters. The page goes to docs/benchmarks.md.

    python benchmarks/bench.py            # the full run, about 10 minutes on 2 cores
    python benchmarks/bench.py --quick    # a smoke test under a minute; the page goes
                                          # to a temporary file unless --output is given
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import http.client
import importlib.metadata
import json
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
API_KEY = "emulator-key"
CLIENTS = ("floor", "httpx", "aiohttp", "openai", "flux_sdk", "flux_aiohttp", "flux_trio")
LABELS = {
    "floor": "floor (hand-written)",
    "flux_trio": "flux_sdk on trio",
    "httpx": "raw httpx",
    "aiohttp": "raw aiohttp",
    "openai": "openai-python",
    "flux_sdk": "flux_sdk",
    "flux_aiohttp": "flux_sdk + AiohttpTransport",
}
CONCURRENCY = (1, 16, 64, 256)
# Issue 17's goal: flux_sdk's CPU per 2 MiB image at most this many times the floor's.
FLOOR_GOAL = 1.5
FLOOR_CONCURRENCY = (1, 16, 64)
PLOT = ROOT / "docs" / "img" / "cpu-per-image.png"
RSS_CONCURRENCY = 32
MIB = 1024 * 1024
# The emulator's side for images nobody asked a size for; padding makes up the bytes.
IMAGE_SIDE = 32


@dataclass(frozen=True)
class Workload:
    key: str
    title: str
    image_bytes: int
    write: bool
    counts: dict[int, int]  # images measured per concurrency
    quick_counts: dict[int, int]
    warmup_cap: int  # unmeasured requests before the measured ones, at most
    repeats: int  # per figure in a full run; cheap small requests get more

    def warmup(self, concurrency: int, quick: bool) -> int:
        """Enough to open the pool and fill lazy caches; at most ``warmup_cap`` requests.

        Small answers warm up with a whole wave, so every connection is open before the
        batch starts. With 2 MiB answers a wave at 256 would cost more time than it is
        worth: the connections past the cap open as the batch starts, before the part
        that is measured (see ``_worker.window``).
        """
        cap = min(self.warmup_cap, 8) if quick else self.warmup_cap
        return min(max(concurrency, 2), cap)


WORKLOADS = (
    Workload(
        "small",
        "Small answers: a 1.5 KB image, about 2 KB of JSON",
        image_bytes=1536,
        write=False,
        counts={1: 200, 16: 600, 64: 600, 256: 768},
        quick_counts={1: 10, 16: 32, 64: 64, 256: 256},
        warmup_cap=256,
        repeats=4,
    ),
    Workload(
        "2mib",
        "Realistic answers: a 2 MiB image, about 2.8 MB of JSON, written to disk",
        image_bytes=2 * MIB,
        write=True,
        counts={1: 16, 16: 128, 64: 192, 256: 512},
        quick_counts={1: 2, 16: 16, 64: 16, 256: 16},
        warmup_cap=8,
        repeats=2,
    ),
)


@dataclass
class Cell:
    """Every repeat of one client on one workload at one concurrency."""

    cpu_per_image: list[float] = field(default_factory=list)  # seconds
    images_per_s: list[float] = field(default_factory=list)
    maxrss: list[float] = field(default_factory=list)  # bytes
    server_cpu_per_image: list[float] = field(default_factory=list)
    system_share: list[float] = field(default_factory=list)  # kernel part of the CPU
    faults_per_image: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def median(self, name: str) -> float | None:
        values: list[float] = getattr(self, name)
        return statistics.median(values) if values else None


Results = dict[tuple[str, str, int], Cell]  # (workload, client, concurrency)


# The server


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def emulator(workload: Workload) -> Iterator[tuple[str, int, int]]:
    """Serve the workload's images; yield the base URL, the server's pid and a body's size."""
    port = free_port()
    args = [str(port), str(workload.image_bytes), str(IMAGE_SIDE)]
    process = subprocess.Popen([sys.executable, str(HERE / "_emulator.py"), *args], cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                body_bytes = probe(port)
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the emulator did not start") from None
                time.sleep(0.05)
        yield url, process.pid, body_bytes
    finally:
        process.terminate()
        process.wait(timeout=30)


def probe(port: int) -> int:
    """One Dataoorts request: proves the server is up, and sizes one of its answers."""
    body = {"model": "black-forest-labs/flux-1-schnell", "data": {"prompt": "probe"}}
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request(
            "POST",
            "/api/v1",
            body=json.dumps(body),
            headers={"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"},
        )
        response = connection.getresponse()
        content = response.read()
    finally:
        connection.close()
    if response.status != 200:
        raise RuntimeError(f"the emulator answered HTTP {response.status}: {content[:200]!r}")
    return len(content)


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of another process, from /proc (10 ms resolution)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# One measurement


def run_worker(spec: dict[str, Any], server_pid: int) -> dict[str, Any]:
    """Run ``_worker.py`` for one measurement; add the server's CPU over the whole batch."""
    process = subprocess.Popen(
        [sys.executable, str(HERE / "_worker.py"), json.dumps(spec)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdin is not None
    assert process.stdout is not None
    server_before = None
    if process.stdout.readline().strip() == "warm":
        server_before = cpu_seconds(server_pid)
        process.stdin.write("go\n")
        process.stdin.flush()
    try:
        out, err = process.communicate(timeout=600)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
    server_after = cpu_seconds(server_pid)
    if process.returncode != 0 or server_before is None:
        lines = err.strip().splitlines()
        raise RuntimeError(lines[-1] if lines else f"exit status {process.returncode}")
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    result["server_cpu"] = server_after - server_before
    return result


def measure(
    results: Results,
    workload: Workload,
    client: str,
    concurrency: int,
    count: int,
    warmup: int,
    url: str,
    server_pid: int,
    key: str,
) -> None:
    spec = {
        "client": client,
        "url": url,
        "concurrency": concurrency,
        "count": count,
        "warmup": warmup,
        "image_bytes": workload.image_bytes,
        "write": workload.write,
    }
    cell = results.setdefault((key, client, concurrency), Cell())
    try:
        result = run_worker(spec, server_pid)
    except RuntimeError as exc:
        cell.errors.append(str(exc))
        log(f"  {key:5} c={concurrency:<3} {LABELS[client]:14} FAILED: {exc}")
        return
    images = result["images"]  # the steady part of the batch (see _worker.window)
    cell.cpu_per_image.append(result["cpu"] / images)
    cell.images_per_s.append(images / result["wall"])
    cell.maxrss.append(result["maxrss_kib"] * 1024)
    cell.server_cpu_per_image.append(result["server_cpu"] / count)
    cell.system_share.append(result["system"] / max(result["user"] + result["system"], 1e-9))
    cell.faults_per_image.append(result["minor_faults"] / images)
    log(
        f"  {key:5} c={concurrency:<3} {LABELS[client]:14} "
        f"{result['cpu'] / images * 1e6:9.0f} us/image  {images / result['wall']:8.1f} images/s  "
        f"peak RSS {result['maxrss_kib'] / 1000:6.1f} MB"
    )


def rotated(turn: int) -> tuple[str, ...]:
    start = turn % len(CLIENTS)
    return CLIENTS[start:] + CLIENTS[:start]


# Import times


def import_cases() -> dict[str, str]:
    return {
        "raw httpx": "import httpx",
        "raw aiohttp": "import aiohttp",
        "openai-python": "from openai import AsyncOpenAI",
        "flux_sdk": "import flux_sdk",
        "flux_sdk's dependencies": "import " + ", ".join(runtime_dependencies()),
        # `import pydantic` alone loads almost nothing; flux_sdk's models need the rest.
        "its dependencies as it uses them": "import "
        + ", ".join(runtime_dependencies())
        + "; from pydantic import BaseModel, SecretStr",
    }


def runtime_dependencies() -> list[str]:
    """flux_sdk's required dependencies as module names (each is named like its package)."""
    names = []
    for requirement in importlib.metadata.requires("flux-sdk") or []:
        if "extra ==" in requirement:
            continue
        match = re.match(r"[A-Za-z0-9_.-]+", requirement)
        if match:
            names.append(match[0].lower().replace("-", "_"))
    return names


def import_seconds(statement: str) -> float:
    code = f"import time; t = time.perf_counter(); {statement}; print(time.perf_counter() - t)"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    return float(done.stdout)


def import_times(runs: int) -> dict[str, float]:
    cases = import_cases()
    for statement in cases.values():
        import_seconds(statement)  # compiles any missing .pyc before the timed runs
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(runs):  # interleaved, so drift hits every case alike
        for name, statement in cases.items():
            times[name].append(import_seconds(statement))
    return {name: statistics.median(values) for name, values in times.items()}


# The page


def machine() -> list[str]:
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.MULTILINE)
    meminfo = Path("/proc/meminfo").read_text() if Path("/proc/meminfo").exists() else ""
    memory = re.search(r"^MemTotal:\s*(\d+) kB", meminfo, re.MULTILINE)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    names = ["flux-sdk", "httpx", "httpcore", "aiohttp", "openai", "pydantic", "uvicorn"]
    if version("httpx2") != "not installed":  # the HTTP client of openai-python 3
        names.insert(names.index("openai") + 1, "httpx2")
    versions = ", ".join(f"{name} {version(name)}" for name in names)
    return [
        f"- CPU: {model[1].strip() if model else platform.processor() or 'unknown'}, "
        f"{cores} cores available",
        f"- Memory: {int(memory[1]) / 1024**2:.1f} GiB" if memory else "- Memory: unknown",
        f"- OS: {platform.platform()}",
        f"- Python: {platform.python_version()} ({platform.python_implementation()})",
        f"- Versions: {versions}",
        "- Server: the emulator under uvicorn (h11, asyncio) in its own process on loopback;"
        " clients run on the default asyncio event loop",
    ]


def version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def fmt(value: float | None, scale: float, digits: int = 0) -> str:
    return "failed" if value is None else f"{value * scale:,.{digits}f}"


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def table(
    results: Results,
    key: str,
    name: str,
    scale: float,
    digits: int,
    relative: bool,
    base_client: str = "httpx",
) -> list[str]:
    head = "| client | " + " | ".join(f"c={c}" for c in CONCURRENCY) + " |"
    lines = [head, "|---|" + "---:|" * len(CONCURRENCY)]
    for client in CLIENTS:
        cells = []
        for c in CONCURRENCY:
            cell = results.get((key, client, c))
            value = cell.median(name) if cell else None
            text = fmt(value, scale, digits)
            base = results.get((key, base_client, c))
            r = ratio(value, base.median(name) if base else None)
            if relative and client != base_client and r is not None:
                text += f" ({r:.2f}x)"
            cells.append(text)
        lines.append(f"| {LABELS[client]} | " + " | ".join(cells) + " |")
    return lines


def floor_summary(results: Results) -> list[str]:
    """Milliseconds per 2 MiB image and the ratio to the floor, one row per client."""
    head = "| client | " + " | ".join(f"c={c}" for c in CONCURRENCY) + " |"
    lines = [
        "Client CPU per 2 MiB image in milliseconds (in brackets: against the floor):",
        "",
        head,
        "|---|" + "---:|" * len(CONCURRENCY),
    ]
    for client in CLIENTS:
        cells = []
        for c in CONCURRENCY:
            cell, floor = results.get(("2mib", client, c)), results.get(("2mib", "floor", c))
            value = cell.median("cpu_per_image") if cell else None
            r = ratio(value, floor.median("cpu_per_image") if floor else None)
            text = fmt(value, 1e3, 1)
            cells.append(text if client == "floor" or r is None else f"{text} ({r:.2f}x)")
        lines.append(f"| {LABELS[client]} | " + " | ".join(cells) + " |")
    return lines


def plot(results: Results, path: Path) -> bool:
    """Grouped bars of CPU per 2 MiB image, one group per concurrency; False without
    matplotlib (the page then lacks a fresh plot, nothing else)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ModuleNotFoundError:
        return False
    figure, axes = plt.subplots(figsize=(9, 4.5), dpi=110)
    width = 0.8 / len(CLIENTS)
    for k, client in enumerate(CLIENTS):
        values = []
        for c in CONCURRENCY:
            cell = results.get(("2mib", client, c))
            value = cell.median("cpu_per_image") if cell else None
            values.append(0.0 if value is None else value * 1e3)
        xs = [i + (k - (len(CLIENTS) - 1) / 2) * width for i in range(len(CONCURRENCY))]
        axes.bar(
            xs,
            values,
            width,
            label=LABELS[client],
            color="black" if client == "floor" else None,
            zorder=2,
        )
    for i, c in enumerate(CONCURRENCY):
        floor = results.get(("2mib", "floor", c))
        value = floor.median("cpu_per_image") if floor else None
        if value is not None:
            axes.hlines(
                value * 1e3 * FLOOR_GOAL, i - 0.42, i + 0.42, colors="black", linestyles="dashed"
            )
    axes.set_xticks(range(len(CONCURRENCY)), [f"{c} in flight" for c in CONCURRENCY])
    axes.set_ylabel("client CPU per 2 MiB image (ms)")
    axes.set_title(f"CPU per image; dashed: {FLOOR_GOAL} x the floor (the goal for flux_sdk)")
    axes.grid(axis="y", alpha=0.3, zorder=0)
    axes.legend(fontsize=8, ncols=2)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return True


def kept_sections(old: str, new: str) -> str:
    """The marked sections other scripts own (``<!-- name: start -->`` to
    ``<!-- name: end -->``) in the old page and not in the new one, in their order."""
    blocks = re.findall(r"<!-- ([\w-]+): start -->.*?<!-- \1: end -->", old, re.DOTALL)
    kept = []
    for name in blocks:
        block = re.search(rf"<!-- {name}: start -->.*?<!-- {name}: end -->", old, re.DOTALL)
        if block and f"<!-- {name}: start -->" not in new:
            kept.append(block[0])
    return "".join(f"\n{block}\n" for block in kept)


def verdict(ok: bool | None) -> str:
    return "not measured" if ok is None else ("**pass**" if ok else "**miss**")


def goals(
    results: Results, imports: dict[str, float], body_bytes: dict[str, int]
) -> list[list[str]]:
    """Rows of (goal, measured, verdict)."""
    rows: list[list[str]] = []

    def median(key: str, client: str, c: int, name: str) -> float | None:
        cell = results.get((key, client, c))
        return cell.median(name) if cell else None

    for ours, where in (("flux_sdk", "on asyncio"), ("flux_trio", "on trio")):
        ratios = {
            c: ratio(
                median("2mib", ours, c, "cpu_per_image"),
                median("2mib", "floor", c, "cpu_per_image"),
            )
            for c in FLOOR_CONCURRENCY
        }
        known = [r for r in ratios.values() if r is not None]
        rows.append(
            [
                f"CPU per 2 MiB image, flux_sdk's default stack {where}, at most "
                f"{FLOOR_GOAL} x the floor (issue 17)",
                ", ".join(f"c={c}: {r:.2f}x" for c, r in ratios.items() if r is not None)
                or "failed",
                verdict(max(known) <= FLOOR_GOAL if len(known) == len(ratios) else None),
            ]
        )
    for ours, peer, limit in (
        ("flux_sdk", "httpx", 0.35),
        ("flux_sdk", "openai", 0.5),
        ("flux_aiohttp", "httpx", 0.35),
        ("flux_aiohttp", "openai", 0.5),
    ):
        ratios = {
            c: ratio(
                median("2mib", ours, c, "cpu_per_image"),
                median("2mib", peer, c, "cpu_per_image"),
            )
            for c in CONCURRENCY
        }
        known = [r for r in ratios.values() if r is not None]
        shown = ", ".join(f"c={c}: {r:.2f}x" for c, r in ratios.items() if r is not None)
        which = "" if ours == "flux_sdk" else " (with the optional AiohttpTransport)"
        rows.append(
            [
                f"CPU per 2 MiB image, end to end, at most {limit} x {LABELS[peer]}{which}",
                shown or "failed",
                verdict(max(known) <= limit if len(known) == len(ratios) else None),
            ]
        )
    ratios = {
        c: ratio(
            median("small", "flux_sdk", c, "cpu_per_image"),
            median("small", "httpx", c, "cpu_per_image"),
        )
        for c in CONCURRENCY
    }
    known = [r for r in ratios.values() if r is not None]
    rows.append(
        [
            "CPU per small request at most 1.1 x raw httpx",
            ", ".join(f"c={c}: {r:.2f}x" for c, r in ratios.items() if r is not None) or "failed",
            verdict(max(known) <= 1.1 if len(known) == len(ratios) else None),
        ]
    )
    for key, label in (("small", "small"), ("2mib", "2 MiB")):
        r = ratio(
            median(key, "flux_sdk", 256, "images_per_s"),
            median(key, "flux_sdk", 16, "images_per_s"),
        )
        peers = ", ".join(
            f"{LABELS[client]} {q:.2f}x"
            for client in ("httpx", "aiohttp", "openai")
            if (
                q := ratio(
                    median(key, client, 256, "images_per_s"),
                    median(key, client, 16, "images_per_s"),
                )
            )
            is not None
        )
        rows.append(
            [
                f"Throughput ({label}) at concurrency 256 at least 0.8 x at 16",
                ("failed" if r is None else f"{r:.2f}x") + f" (for comparison: {peers})",
                verdict(None if r is None else r >= 0.8),
            ]
        )
    rss = median("rss", "flux_sdk", RSS_CONCURRENCY, "maxrss")
    body = body_bytes.get("2mib", 0)
    bound = 50e6 + RSS_CONCURRENCY * 2.5 * body
    rows.append(
        [
            f"Peak RSS at concurrency {RSS_CONCURRENCY} with 2 MiB images at most "
            f"50 MB + {RSS_CONCURRENCY} x 2.5 x body ({body / 1e6:.2f} MB) = {bound / 1e6:.0f} MB",
            "failed" if rss is None else f"{rss / 1e6:.0f} MB ({rss / bound:.2f}x the bound)",
            verdict(None if rss is None else rss <= bound),
        ]
    )
    flux, deps = imports.get("flux_sdk"), imports.get("flux_sdk's dependencies")
    used = imports.get("its dependencies as it uses them")
    r = ratio(flux, deps)
    measured = "failed"
    if r is not None and flux is not None and deps is not None:
        measured = f"{flux * 1e3:.0f} ms vs {deps * 1e3:.0f} ms: {r:.2f}x"
        if used is not None:
            measured += (
                f" (against the dependencies as flux_sdk uses them, {used * 1e3:.0f} ms: "
                f"{flux / used:.2f}x)"
            )
    rows.append(
        [
            "`import flux_sdk` at most 1.3 x importing its runtime dependencies",
            measured,
            verdict(None if r is None else r <= 1.3),
        ]
    )
    return rows


def page(
    results: Results,
    imports: dict[str, float],
    body_bytes: dict[str, int],
    command: str,
    repeats: dict[str, int],
    elapsed: float,
    quick: bool,
    load: float,
) -> str:
    out = ["# Benchmarks", ""]
    if quick:
        out += [
            "!!! warning",
            "    A `--quick` smoke run: too few images for the figures to mean much.",
            "",
        ]
    out += [
        "flux_sdk against the least a client can do (a hand-written floor), what a careful",
        "user writes with a library (raw httpx), the practical limit of async HTTP in Python",
        "(raw aiohttp) and the most used peer (openai-python), measured side by side in one run.",
        " This page is written by the harness; to refresh it:",
        "",
        "```bash",
        "nox -s bench              # the full run, about 10 minutes on 2 cores",
        "nox -s bench -- --quick   # a smoke test under a minute (writes a temporary page)",
        "```",
        "",
        "## How it is measured",
        "",
        "- The emulator runs as a real HTTP server (uvicorn) on loopback, in its own process.",
        "  raw httpx, raw aiohttp and flux_sdk call its Dataoorts route; openai-python calls",
        '  its OpenAI-style `POST /v1/images/generations` with `response_format="b64_json"`.',
        "  All of them receive the same PNG bytes in nearly the same JSON.",
        "- The floor (hand-written): asyncio streams, a keep-alive connection per request in",
        "  flight, each request sent in one write, the status line and headers read line by",
        "  line, then `readexactly(Content-Length)`, `pydantic_core.from_json` and",
        "  `pybase64.b64decode`: no timeouts, retries or checks. It is the reference for",
        "  CPU per image; StreamReader grows its buffer as the body arrives, which at one",
        "  request in flight costs it page faults that the other clients can avoid.",
        "- raw httpx: one `AsyncClient` with `Limits` sized to the concurrency, then",
        "  `json.loads` and `base64.b64decode`. raw aiohttp: one `ClientSession`, a",
        "  `TCPConnector(limit=N)`, the same parsing. openai-python: `AsyncOpenAI` with its",
        "  defaults, `images.generate(...)`, then `base64.b64decode`. flux_sdk:",
        "  `FluxClient(Dataoorts(...), max_concurrency=N)` with its default middleware;",
        '  "flux_sdk + AiohttpTransport": the same, with `http_client=httpx.AsyncClient(',
        "  transport=AiohttpTransport())` (the optional asyncio-only transport);",
        '  "flux_sdk on trio": the default stack again, the worker run by `anyio.run(...,',
        '  backend="trio")` (every other client runs on asyncio).',
        "- Each measurement runs in a fresh process: after an unmeasured warm-up (a wave",
        "  of N small answers, or up to 8 of 2 MiB), N tasks pull from one counter until",
        "  the batch is done. The figures come from its steady part, while all N requests",
        "  are in flight: from completion min(N, (count - N) / 4) to completion count - N.",
        "  This leaves out connection set-up and the drain at the end, when most of a",
        "  pool's connections sit idle (which costs httpcore's pool more per request).",
        "- **CPU per image** is that process's CPU time (`time.process_time()`, user and",
        "  system, every thread) over that part, divided by its images; the server's CPU",
        "  is read from `/proc` apart, over the whole batch. **Peak RSS** is the process's",
        "  `ru_maxrss`, warm-up included.",
        "- 2 MiB images are checked and written to a file in a temporary directory with",
        "  the same `Path.write_bytes` for every client (flux_sdk's own `save` adds an",
        "  `fsync`, which measures the disk rather than the client).",
        (
            f"- Every figure is the median of {repeats['small']} repeats (small answers) or"
            f" {repeats['2mib']} (2 MiB); each repeat runs every client"
            if min(repeats.values()) > 1
            else "- Every figure comes from a single run; the clients run"
        ),
        "  in turn, starting with a different one each time. These machines are noisy:",
        "  differences under about 10% are not worth reading into. raw httpx and flux_sdk",
        "  at 64 and 256 in flight vary up to 2x between repeats: most of their CPU there is",
        "  httpcore's pool bookkeeping, whose cost depends on how many connections happen",
        "  to be idle.",
        "- Import times are medians of fresh interpreters, interleaved.",
        "- To see where one client's CPU goes on one workload:",
        "  `python benchmarks/profile_client.py flux_sdk 2mib 16` (cProfile; add",
        "  `--pyinstrument` for a sampling profile).",
        "",
        "## Machine",
        "",
        *machine(),
        f"- Load average just before the run: {load:.2f} (other work on the machine, which"
        " competes with the benchmark for its cores)",
        f"- Command: `{command}` ({elapsed / 60:.1f} minutes)",
        f"- Date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
        "",
        "## CPU per 2 MiB image against the floor (issue 17)",
        "",
        "![CPU per 2 MiB image per client and concurrency; the floor is the first bar of"
        " each group and the dashed line is 1.5 x the floor](img/cpu-per-image.png)",
        "",
        *floor_summary(results),
        "",
        "## Goals (issues 6 and 17)",
        "",
        "| goal | measured | |",
        "|---|---|---|",
    ]
    out += ["| " + " | ".join(row) + " |" for row in goals(results, imports, body_bytes)]
    out += [
        "",
        "Ratios are flux_sdk's figure divided by the peer's, at the same concurrency, in",
        "the same run. The body is the HTTP body of one answer as the server sent it.",
    ]
    for workload in WORKLOADS:
        key = workload.key
        out += [
            "",
            f"## {workload.title}",
            "",
            f"One answer is {body_bytes.get(key, 0):,} bytes of JSON.",
            "",
            "Client CPU per image, in microseconds (in brackets: against the floor):",
            "",
            *table(results, key, "cpu_per_image", 1e6, 0, relative=True, base_client="floor"),
            "",
            "Images per second (in brackets: against raw httpx):",
            "",
            *table(results, key, "images_per_s", 1, 1, relative=True),
            "",
            "Peak RSS of the client process, in MB:",
            "",
            *table(results, key, "maxrss", 1e-6, 0, relative=False),
            "",
            "Server CPU per image, in microseconds (the emulator, for scale):",
            "",
            *table(results, key, "server_cpu_per_image", 1e6, 0, relative=False),
        ]
        if workload.write:
            out += [
                "",
                "Minor page faults per image in the client (fresh multi-megabyte buffers;",
                "each costs a few microseconds of kernel time on a virtual machine):",
                "",
                *table(results, key, "faults_per_image", 1, 0, relative=False),
            ]
    out += [
        "",
        f"## Peak RSS at concurrency {RSS_CONCURRENCY} with 2 MiB images",
        "",
        "| client | peak RSS (MB) |",
        "|---|---:|",
    ]
    for client in CLIENTS:
        cell = results.get(("rss", client, RSS_CONCURRENCY))
        out.append(f"| {LABELS[client]} | {fmt(cell.median('maxrss') if cell else None, 1e-6)} |")
    out += [
        "",
        "## Import time",
        "",
        "| statement | median (ms) |",
        "|---|---:|",
    ]
    for name, statement in import_cases().items():
        out.append(f"| `{statement}` ({name}) | {fmt(imports.get(name), 1e3, 1)} |")
    failures = [
        f"- {key} c={c} {LABELS[client]}: {error}"
        for (key, client, c), cell in results.items()
        for error in cell.errors
    ]
    if failures:
        out += ["", "## Failed measurements", "", *failures]
    return "\n".join(out) + "\n"


# The run


_STARTED = time.perf_counter()


def log(message: str) -> None:
    elapsed = int(time.perf_counter() - _STARTED)
    print(f"{elapsed // 60:2d}:{elapsed % 60:02d} {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke test with tiny counts")
    parser.add_argument(
        "--repeats", type=int, help="repeats per figure (default 4 small, 2 for 2 MiB; quick 1)"
    )
    parser.add_argument("--output", type=Path, help="where to write the page")
    parser.add_argument("--json", type=Path, help="also write every raw figure here")
    args = parser.parse_args(argv)
    output = args.output or (
        Path(tempfile.gettempdir()) / "flux-sdk-benchmarks-quick.md"
        if args.quick
        else ROOT / "docs" / "benchmarks.md"
    )
    command = " ".join(
        ["python benchmarks/bench.py", *(argv if argv is not None else sys.argv[1:])]
    )
    start = time.perf_counter()
    load = os.getloadavg()[0]
    results: Results = {}
    body_bytes: dict[str, int] = {}
    turn = 0
    repeats = {w.key: args.repeats or (1 if args.quick else w.repeats) for w in WORKLOADS}
    for workload in WORKLOADS:
        counts = workload.quick_counts if args.quick else workload.counts
        with emulator(workload) as (url, pid, body):
            body_bytes[workload.key] = body
            log(f"{workload.title}: {url}, {body:,} bytes per answer")
            for concurrency in CONCURRENCY:
                warmup = workload.warmup(concurrency, args.quick)
                for _ in range(repeats[workload.key]):
                    for client in rotated(turn):
                        measure(
                            results,
                            workload,
                            client,
                            concurrency,
                            counts[concurrency],
                            warmup,
                            url,
                            pid,
                            workload.key,
                        )
                    turn += 1
            if workload.key == "2mib":
                count = RSS_CONCURRENCY if args.quick else 2 * RSS_CONCURRENCY
                for _ in range(repeats[workload.key]):
                    for client in rotated(turn):
                        measure(
                            results,
                            workload,
                            client,
                            RSS_CONCURRENCY,
                            count,
                            workload.warmup(RSS_CONCURRENCY, args.quick),
                            url,
                            pid,
                            "rss",
                        )
                    turn += 1
    log("import times")
    imports = import_times(2 if args.quick else 11)
    for name, seconds in imports.items():
        log(f"  {name:34} {seconds * 1e3:7.1f} ms")
    elapsed = time.perf_counter() - start
    text = page(results, imports, body_bytes, command, repeats, elapsed, args.quick, load)
    output.parent.mkdir(parents=True, exist_ok=True)
    old = output.read_text() if output.exists() else ""
    text += kept_sections(old, text)  # capacity.py's section, and any other owned elsewhere
    output.write_text(text)
    plotted = plot(results, output.with_suffix(".png") if args.quick else PLOT)
    log("plotted CPU per image" if plotted else "matplotlib is missing: no plot")
    if args.json:
        raw = {f"{key} {client} c={c}": vars(cell) for (key, client, c), cell in results.items()}
        args.json.write_text(json.dumps({"results": raw, "imports": imports}, indent=1))
    log(f"wrote {output} after {elapsed / 60:.1f} minutes")
    return 1 if any(cell.errors for cell in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
