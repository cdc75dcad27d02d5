"""Emulated hosts for routing.py: one EmulatorApp per host, each on its own loopback port,
all served by uvicorn in this one process (so the client's process measures only itself).

    python benchmarks/_hosts.py SPEC_JSON

SPEC_JSON is a list with one entry per host: ``{"capacity": {Capacity fields} | null,
"outage": "503" | null}``. The process prints the ports as one JSON line once every
server listens, serves until a line ``stop`` arrives on stdin, then prints each host's
counters as one JSON line and exits.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import threading
from typing import Any

import uvicorn

from flux_sdk.emulator import Capacity, EmulatorApp, Fault, FaultPlan


def make_app(spec: dict[str, Any]) -> EmulatorApp:
    faults = FaultPlan()
    if spec.get("outage"):
        faults.outage(Fault(spec["outage"]))
    capacity = Capacity(**spec["capacity"]) if spec.get("capacity") else None
    # A 64-pixel image: the figures are about routing, not about moving image bytes.
    return EmulatorApp(default_size=64, faults=faults, capacity=capacity)


def counters(app: EmulatorApp) -> dict[str, Any]:
    """What one host saw: every request, and its capacity's counters when it has one."""
    loads = [load for load in app.load.values() if load.requests]
    out: dict[str, Any] = {
        "requests": app.requests_seen,
        "faulted": sum(app.faults.injected.values()),
    }
    for load in loads:
        out.update(
            served=load.served,
            refused=load.refused,
            abandoned=load.abandoned,
            max_in_service=load.max_in_service,
            max_queued=load.max_queued,
        )
    return out


async def serve(apps: list[EmulatorApp], sockets: list[socket.socket]) -> None:
    servers = [
        uvicorn.Server(
            uvicorn.Config(
                app,
                log_level="warning",
                lifespan="off",
                # Idle keep-alive connections are kept, as in bench.py's emulator.
                timeout_keep_alive=600,
                loop="asyncio",
                http="h11",
            )
        )
        for app in apps
    ]
    tasks = [
        asyncio.create_task(server.serve(sockets=[sock]))
        for server, sock in zip(servers, sockets, strict=True)
    ]
    while not all(server.started for server in servers):  # noqa: ASYNC110 - uvicorn has no event
        await asyncio.sleep(0.01)
    print(json.dumps([sock.getsockname()[1] for sock in sockets]), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def wait_for_stop() -> None:
        for line in sys.stdin:
            if line.strip() == "stop":
                break
        loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=wait_for_stop, daemon=True).start()
    await stop.wait()
    for server in servers:
        server.should_exit = True
    await asyncio.gather(*tasks)


def main() -> None:
    specs: list[dict[str, Any]] = json.loads(sys.argv[1])
    apps = [make_app(spec) for spec in specs]
    sockets = []
    for _ in apps:
        # IPPROTO_TCP named, not 0: asyncio sets TCP_NODELAY on accepted connections only
        # when the listening socket's proto says TCP. Without it each answer (headers,
        # then body) waits out the client's delayed ACK: 40 ms a request on Linux.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sockets.append(sock)
    asyncio.run(serve(apps, sockets))
    print(json.dumps([counters(app) for app in apps]), flush=True)


if __name__ == "__main__":
    main()
