"""SharedLimit across processes: aggregate throughput against a host whose capacity equals
the limit, and the CPU a SharedLimit adds per request over a local ConcurrencyLimit.

Needs redis-server on PATH and the redis extra. About a minute on 2 cores:

    python benchmarks/shared_limit.py [--requests 240] [--median 0.5]

The host is the emulator with Capacity(replicas=8, median=..., queue=0, overflow="429"):
it serves 8 / median requests a second and refuses a ninth at once with a 429, so a
shared concurrency of 8 is exactly its capacity. Workers are separate processes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from typing import Any

import uvicorn

from flux_sdk import ConcurrencyLimit, FluxClient, FluxError, SharedLimit, Together
from flux_sdk.emulator import DEFAULT_API_KEY, Capacity, EmulatorApp

LIMIT = 8


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def work(settings: dict[str, Any]) -> dict[str, Any]:
    limit: SharedLimit | ConcurrencyLimit
    if settings["redis_url"]:
        limit = SharedLimit(settings["redis_url"], settings["name"], concurrency=LIMIT)
    else:
        limit = ConcurrencyLimit(LIMIT)
    provider = Together(DEFAULT_API_KEY, base_url=settings["url"] + "/together")
    failed = 0
    async with FluxClient(provider, max_concurrency=limit, max_retries=5) as flux:

        async def one(k: int) -> None:
            nonlocal failed
            try:
                await flux.generate(f"bench {k}", seed=k, width=64, height=64)
            except FluxError as exc:
                failed += 1
                if failed == 1:
                    print(f"first failure: {exc}", file=sys.stderr)

        await flux.generate("warm up", width=64, height=64)
        cpu, start = time.process_time(), time.time()
        await asyncio.gather(*(one(k) for k in range(settings["n"])))
        cpu, end = time.process_time() - cpu, time.time()
    if isinstance(limit, SharedLimit):
        await limit.aclose()
    return {"cpu": cpu, "failed": failed, "start": start, "end": end}


def serve(app: Any) -> tuple[str, uvicorn.Server]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, log_level="warning", lifespan="off", timeout_keep_alive=600)
    server = uvicorn.Server(config)
    threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
    while not server.started:
        time.sleep(0.01)
    return f"http://127.0.0.1:{sock.getsockname()[1]}", server


def run_workers(count: int, settings: dict[str, Any]) -> list[dict[str, Any]]:
    each = {**settings, "n": settings["n"] // count}
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, "--worker", json.dumps(each)],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(count)
    ]
    return [json.loads(proc.communicate()[0]) for proc in procs]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--worker")
    parser.add_argument("--requests", type=int, default=240)
    parser.add_argument("--median", type=float, default=0.5)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(asyncio.run(work(json.loads(args.worker)))))
        return
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("needs redis-server on PATH (apt-get install redis-server)")
    port = free_port()
    with tempfile.TemporaryDirectory() as directory:
        redis = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", directory],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            time.sleep(0.3)
            report(f"redis://127.0.0.1:{port}/0", args)
        finally:
            redis.terminate()
            redis.wait()


def report(redis_url: str, args: argparse.Namespace) -> None:
    capacity = LIMIT / args.median
    print(f"host: {LIMIT} replicas x {args.median * 1000:.0f} ms = {capacity:.0f} req/s; "
          f"{args.requests} requests per run; shared concurrency {LIMIT}")  # fmt: skip
    print("| processes | req/s | of capacity | 429s received | failed |")
    print("|---|---|---|---|---|")
    for count, shared in ((1, None), (1, redis_url), (2, redis_url), (4, redis_url)):
        app = EmulatorApp(
            default_size=64,
            capacity=Capacity(replicas=LIMIT, median=args.median, queue=0, overflow="429"),
        )
        url, server = serve(app)
        load = app.load["together"]
        settings = {"url": url, "redis_url": shared, "name": uuid.uuid4().hex,
                    "n": args.requests}  # fmt: skip
        results = run_workers(count, settings)
        # From the first worker's start to the last one's end: process start-up is not
        # the limit's doing.
        elapsed = max(r["end"] for r in results) - min(r["start"] for r in results)
        rate = sum(settings["n"] // count - r["failed"] for r in results) / elapsed
        label = f"{count} (SharedLimit)" if shared else f"{count} (ConcurrencyLimit)"
        print(f"| {label} | {rate:.1f} | {rate / capacity:.2f}x | {load.refused} | "
              f"{sum(r['failed'] for r in results)} |")  # fmt: skip
        server.should_exit = True
    # CPU per request in the client process: SharedLimit against a local limit, on a
    # host with no service time.
    url, server = serve(EmulatorApp(default_size=64))
    cpu = {}
    for label, shared in (("ConcurrencyLimit", None), ("SharedLimit", redis_url)):
        settings = {"url": url, "redis_url": shared, "name": uuid.uuid4().hex, "n": 1000}
        (result,) = run_workers(1, settings)
        cpu[label] = result["cpu"] / 1000 * 1e6
    server.should_exit = True
    print(f"client CPU per request: ConcurrencyLimit {cpu['ConcurrencyLimit']:.0f} us, "
          f"SharedLimit {cpu['SharedLimit']:.0f} us "
          f"(+{cpu['SharedLimit'] - cpu['ConcurrencyLimit']:.0f} us)")  # fmt: skip


if __name__ == "__main__":
    main()
