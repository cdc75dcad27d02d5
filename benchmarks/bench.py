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
    python benchmarks/bench.py --floor8 [--quick]  # only flux_sdk against issue 26's floor
                                          # at concurrency 8 in interleaved rounds (_floor8.py)
    python benchmarks/bench.py --floor8 --keep-memory  # the same, page faults taken out
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import datetime
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _figures import (
    API_KEY,
    CLIENTS,
    CONCURRENCY,
    IMAGE_SIDE,
    LABELS,
    PLOT,
    ROOT,
    RSS_CONCURRENCY,
    WORKLOADS,
    Cell,
    Results,
    Workload,
    import_cases,
)
from _page import kept_sections, page
from _plot import plot

HERE = Path(__file__).resolve().parent


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


def import_seconds(statement: str) -> float:
    """One fresh interpreter's time for ``statement``, reading .pyc files as an installed
    package does (``PYTHONDONTWRITEBYTECODE=1`` would time the compiler instead)."""
    code = f"import time; t = time.perf_counter(); {statement}; print(time.perf_counter() - t)"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT, env=env
    )
    return float(done.stdout)


def import_times(runs: int) -> dict[str, float]:
    cases = import_cases()
    compileall.compile_dir(ROOT / "src" / "flux_sdk", quiet=1)
    for statement in cases.values():
        import_seconds(statement)  # compiles any missing .pyc before the timed runs
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(runs):  # interleaved, so drift hits every case alike
        for name, statement in cases.items():
            times[name].append(import_seconds(statement))
    return {name: statistics.median(values) for name, values in times.items()}


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
    parser.add_argument(
        "--render", type=Path, help="measure nothing: write the page from a --json file"
    )
    parser.add_argument(
        "--floor8", action="store_true", help="only flux_sdk against issue 26's floor at c=8"
    )
    parser.add_argument("--rounds", type=int, help="--floor8's rounds (default 16, quick 4)")
    parser.add_argument(
        "--keep-memory",
        action="store_true",
        help="with --floor8: glibc keeps freed memory in every client (no page faults)",
    )
    args = parser.parse_args(argv)
    command = " ".join(
        ["python benchmarks/bench.py", *(argv if argv is not None else sys.argv[1:])]
    )
    if args.floor8:
        import _floor8

        return _floor8.run(args, command, emulator, log)
    output = args.output or (
        Path(tempfile.gettempdir()) / "flux-sdk-benchmarks-quick.md"
        if args.quick
        else ROOT / "docs" / "benchmarks.md"
    )
    if args.render:
        return render(args.render, output, args.quick)
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
    meta = {
        "body_bytes": body_bytes,
        "command": command,
        "repeats": repeats,
        "elapsed": elapsed,
        "load": load,
        "date": f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
    }
    write_page(results, imports, meta, output, args.quick)
    if args.json:
        raw = {f"{key} {client} c={c}": vars(cell) for (key, client, c), cell in results.items()}
        figures = {"results": raw, "imports": imports, "meta": meta}
        args.json.write_text(json.dumps(figures, indent=1))
    log(f"wrote {output} after {elapsed / 60:.1f} minutes")
    return 1 if any(cell.errors for cell in results.values()) else 0


def write_page(
    results: Results, imports: dict[str, float], meta: dict[str, Any], output: Path, quick: bool
) -> None:
    """The page, the sections other scripts own kept as they were, and the plot."""
    text = page(
        results,
        imports,
        meta["body_bytes"],
        meta["command"],
        meta["repeats"],
        meta["elapsed"],
        quick,
        meta["load"],
        meta["date"],
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    old = output.read_text() if output.exists() else ""
    text += kept_sections(old, text)  # capacity.py's section, and any other owned elsewhere
    output.write_text(text)
    plotted = plot(results, output.with_suffix(".png") if quick else PLOT)
    log("plotted CPU per image" if plotted else "matplotlib is missing: no plot")


def render(source: Path, output: Path, quick: bool) -> int:
    """Write the page from the figures of an earlier run (``--json``), measuring nothing:
    for changes to the page's text between full runs."""
    figures = json.loads(source.read_text())
    results: Results = {}
    for name, fields in figures["results"].items():
        key, client, c = name.split(" ")
        results[key, client, int(c.removeprefix("c="))] = Cell(**fields)
    write_page(results, figures["imports"], figures["meta"], output, quick)
    log(f"wrote {output} from {source}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
