"""docs/benchmarks.md from bench.py's figures: tables, goals, and how it was measured."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
from pathlib import Path

from _figures import (
    CLIENTS,
    CONCURRENCY,
    LABELS,
    RSS_CONCURRENCY,
    WORKLOADS,
    Results,
    import_cases,
    ratio,
)
from _goals import goals


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


def page(
    results: Results,
    imports: dict[str, float],
    body_bytes: dict[str, int],
    command: str,
    repeats: dict[str, int],
    elapsed: float,
    quick: bool,
    load: float,
    date: str,
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
        "- Import times are medians of fresh interpreters, interleaved, reading compiled",
        "  .pyc files as an installed package does. flux_sdk's names load on first use,",
        "  so its row is what a first image needs: `from flux_sdk import FluxClient,",
        "  Dataoorts, GenerateRequest`. `python benchmarks/import_time.py` measures",
        "  only imports, with more repeats.",
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
        f"- Date: {date}",
        "",
        "## CPU per 2 MiB image against the floor (issue 17)",
        "",
        "![CPU per 2 MiB image per client and concurrency; the floor is the first bar of"
        " each group and the dashed line is 1.5 x the floor](img/cpu-per-image.png)",
        "",
        *floor_summary(results),
        "",
        "Where the CPU goes with 2 MiB images (`python benchmarks/profile_client.py flux_sdk",
        "2mib 16`, and the page-fault counts further down): most of it is not Python code",
        "but the kernel, copying 2.8 MB over loopback and faulting in the pages of fresh",
        "multi-megabyte buffers (a few microseconds a page on this virtual machine, so a",
        "fresh 2.8 MB buffer costs about as much as parsing it). flux_sdk allocates two per",
        "image: the body, joined once from the pieces read, and the decoded image (the",
        "base64 text is decoded in place from the body). The floor's StreamReader makes up",
        "to four (its growing buffer, the bytes `readexactly` returns, the parsed `str`,",
        "the image), so at one request in flight, where the allocator rarely reuses them,",
        "the floor is not always the least. What is left in Python for flux_sdk: about 11",
        "reads through httpcore and h11 per 2 MiB body (h11 copies each 256 KiB piece into",
        "and out of its buffer, and each read enters an anyio cancel scope), then per request",
        "httpx's request and response objects, its cookie jar, and the middleware.",
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
