"""Completion time at the provider's limit: a batch against hosts of hidden capacity
(issues 17 and 26).

For each capacity (48, 96 and 192 replicas) the emulator runs as a real HTTP server in
its own process, with a ``Capacity``: lognormal service times (median ``--median``
seconds, sigma 0.25), a short FIFO queue (a quarter of the replicas, at least 4), and a
429 with ``Retry-After: 0.5`` beyond it. Five clients each run a batch:

1. flux_sdk with its defaults (``FluxClient(Dataoorts(...))``: the adaptive limit);
2. flux_sdk with ``max_concurrency`` set to the replicas, as if the user knew the
   capacity: the reference a tuned client could reach on this machine;
3. flux_sdk with a fixed ``max_concurrency=16``;
4. a hand-written client: ``asyncio.gather`` over every prompt, an
   ``asyncio.Semaphore(16)``, raw httpx, and a retry after ``Retry-After`` on a 429;
5. openai-python against the OpenAI-style route, the same gather and semaphore of 16,
   its own retries (which honour ``Retry-After``).

Each is timed against the least time possible, ``prompts x median / replicas`` (the
service times' mean is about 3% above their median), and the 429s it received are
counted. The batch is 1,200 prompts; the first two clients get at least 25 rounds of
the host (2,400 prompts at 96, 4,800 at 192), since with fewer the slowest answers of
the last round are most of what is measured. Each run also records where its time
went (`_capacity_page.trace`): the host's in-service timeline (ramp, tail, the replicas'
use), the client's limit and 429s over time, and the CPU of the client and of the
server, so a client held back by its own CPU rather than by its limit shows.

    python benchmarks/capacity.py            # the full run, about 3 minutes on a quiet machine
    python benchmarks/capacity.py --quick    # 300 prompts each, a smoke test, no page
    python benchmarks/capacity.py --clients flux_default,flux_known --page /tmp/b.md

The service time is scaled down from FLUX's ~1 s to 0.1 s so a run takes minutes, but
never so far that the least possible time needs more than ``--max-rate`` (250) requests
a second: at 48 replicas the median is 48 / 250 = 0.192 s, at 96 0.384 s, at 192 0.768
s, close to the real ~1 s. At 0.1 s, 96 replicas would need 960 requests a second
through one Python client and one Python server on a shared 2-core machine, which even
the client that knows the capacity cannot reach (it would measure the machine, not the
limit). Writes a section of docs/benchmarks.md and docs/img/capacity*.png (matplotlib,
in the bench dependency group).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from _capacity_clients import LIMITS, REFUSALS, RUNS, warm_up  # noqa: E402
from _capacity_page import (  # noqa: E402
    CAPACITIES,
    CLIENTS,
    GOAL,
    LABELS,
    MARK_END,
    MARK_START,
    MAX_RATE,
    RETRY_AFTER,
    ROUNDS,
    SCALED,
    SPREAD,
    plot,
    queue_for,
    section,
    trace_line,
)
from bench import free_port  # noqa: E402


def median_for(replicas: int, median: float, max_rate: float) -> float:
    """The service time at this capacity: ``median``, or longer so the least possible
    time needs at most ``max_rate`` requests a second."""
    return max(median, replicas / max_rate)


# The server: `capacity.py --serve PORT REPLICAS MEDIAN OUT` runs in its own process.


def serve(port: int, replicas: int, median: float) -> None:
    import uvicorn

    from flux_sdk.emulator import Capacity, EmulatorApp

    capacity = Capacity(
        replicas=replicas,
        median=median,
        spread=SPREAD,
        queue=queue_for(replicas),
        overflow="429",
        retry_after=RETRY_AFTER,
        seed=17,
    )
    app = EmulatorApp(image_bytes=1536, default_size=32, capacity=capacity)

    async def with_load(scope: Any, receive: Any, send: Any) -> None:
        """The app, and ``GET /_load``: the host's counters and timeline, as JSON."""
        if scope["type"] == "http" and scope["path"] == "/_load":
            body = json.dumps(load_of(app)).encode()
            headers = [(b"content-type", b"application/json")]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        await app(scope, receive, send)

    config = uvicorn.Config(
        with_load, host="127.0.0.1", port=port, log_level="warning", loop="asyncio", http="h11"
    )
    uvicorn.Server(config).run()


def load_of(app: Any) -> dict[str, Any]:
    return {
        name: {
            "requests": load.requests,
            "refused": load.refused,
            "served": load.served,
            "max_in_service": load.max_in_service,
            "max_queued": load.max_queued,
            "timeline": [list(sample) for sample in load.timeline],
        }
        for name, load in app.load.items()
        if load.requests
    }


def start_server(replicas: int, median: float) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    args = [sys.executable, __file__, "--serve", str(port), str(replicas), str(median)]
    process = subprocess.Popen(args, cwd=ROOT)
    import socket

    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the emulator did not start") from None
            time.sleep(0.05)
    return process, f"http://127.0.0.1:{port}"


def measure(client: str, replicas: int, median: float, count: int) -> dict[str, Any]:
    prompts = [f"a lighthouse at dawn, study {k}" for k in range(count)]
    process, url = start_server(replicas, median)
    try:
        server_cpu = cpu_of(process.pid)
        cpu = resource.getrusage(resource.RUSAGE_SELF)
        start = time.monotonic()  # the server's clock too, as for its timeline
        refused, failed = asyncio.run(RUNS[client](url, prompts, replicas))
        end = time.monotonic()
        after = resource.getrusage(resource.RUSAGE_SELF)
        server_after = cpu_of(process.pid)
        with urllib.request.urlopen(f"{url}/_load", timeout=30) as answer:  # noqa: S310
            loads = json.loads(answer.read())
    finally:
        process.terminate()
        process.wait(timeout=60)
    load = next(iter(loads.values()), {})
    best = count * median / replicas
    traced = client in SCALED
    return {
        "client": client,
        "replicas": replicas,
        "count": count,
        "median": median,
        "wall": end - start,
        "start": start,
        "end": end,
        "best": best,
        "ratio": (end - start) / best,
        "refused": refused,
        "server_refused": load.get("refused"),
        "failed": failed,
        "requests": load.get("requests"),
        "client_cpu": after.ru_utime + after.ru_stime - cpu.ru_utime - cpu.ru_stime,
        "server_cpu": None if server_cpu is None else server_after - server_cpu,
        "timeline": load.get("timeline", []) if traced else [],
        "limits": list(LIMITS) if client == "flux_default" else [],
        "refusals": list(REFUSALS) if client == "flux_default" else [],
    }


def cpu_of(pid: int) -> float | None:
    """A process's CPU seconds so far (user and system), from /proc; None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def write_section(page: Path, text: str) -> None:
    """Put ``text`` between the page's capacity marks (bench.py keeps it there)."""
    old = page.read_text() if page.exists() else "# Benchmarks\n"
    if MARK_START in old and MARK_END in old:
        head, rest = old.split(MARK_START, 1)
        tail = rest.split(MARK_END, 1)[1].lstrip("\n")
        new = head + text + ("\n" + tail if tail else "")
    else:
        new = old.rstrip("\n") + "\n\n" + text
    page.write_text(new)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] == "--serve":
        serve(int(args[1]), int(args[2]), float(args[3]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="300 prompts each; no page written")
    parser.add_argument("--prompts", type=int, help="default 1,200 (300 with --quick)")
    parser.add_argument(
        "--rounds", type=int, default=ROUNDS, help="rounds of the host, at least, for the scaled"
    )
    parser.add_argument("--median", type=float, default=0.1, help="seconds of service")
    parser.add_argument(
        "--max-rate", type=float, default=MAX_RATE, help="requests a second, at most"
    )
    parser.add_argument("--clients", default=",".join(CLIENTS))
    parser.add_argument("--capacities", default=",".join(map(str, CAPACITIES)))
    parser.add_argument("--page", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--render", type=Path, help="measure nothing: page from a --json file")
    options = parser.parse_args(args)
    if options.render:
        saved = json.loads(options.render.read_text())
        names = plot(saved["results"], options.page.parent / "img")
        write_section(options.page, section(saved["results"], saved["command"], saved["note"]))
        print(f"wrote {options.page} and {', '.join(names)} from {options.render}")
        return 0
    count = options.prompts or (300 if options.quick else 1200)
    command = ("python benchmarks/capacity.py " + " ".join(args)).strip()
    began, load_before = time.time(), os.getloadavg()[0]
    warm_up()
    results = []
    for replicas in (int(c) for c in options.capacities.split(",")):
        for client in options.clients.split(","):
            median = median_for(replicas, options.median, options.max_rate)
            prompts = count
            if not options.quick and client in SCALED:
                prompts = max(count, options.rounds * replicas)
            result = measure(client, replicas, median, prompts)
            results.append(result)
            print(
                f"{replicas:3} replicas  {LABELS[client]:38} {result['wall']:6.2f} s "
                f"({result['ratio']:.2f}x, {prompts} prompts)  429s: {result['refused']:5}  "
                f"failed: {result['failed']}\n      {trace_line(result)}",
                flush=True,
            )
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(began))
    note = (
        f"That run ({when}, {(time.time() - began) / 60:.1f} minutes) had a load average of "
        f"{load_before:.1f} as it began and {os.getloadavg()[0]:.1f} as it ended."
    )
    if options.json:
        saved = {"results": results, "count": count, "command": command, "note": note}
        options.json.write_text(json.dumps(saved))
    if not options.quick:
        names = plot(results, options.page.parent / "img")
        write_section(options.page, section(results, command, note))
        print(f"wrote {options.page} and {', '.join(names)}")
    ok = all(
        r["ratio"] <= GOAL and r["refused"] < 0.02 * r["count"] and not r["failed"]
        for r in results
        if r["client"] == "flux_default"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
