"""Serve an ASGI app on a real loopback socket for the length of a test."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import uvicorn


@contextmanager
def serve(
    app: Any, *, tls: tuple[Path, Path] | None = None, lifespan: Literal["on", "off"] = "on"
) -> Iterator[str]:
    """Run ``app`` under uvicorn in a thread; yield its base URL, stop it on exit.

    ``tls`` is a (certificate, key) pair to serve https with instead."""
    # IPPROTO_TCP named: asyncio sets TCP_NODELAY on accepted sockets only when the
    # listening socket says it is TCP, else each answer waits out a 40 ms delayed ACK.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))  # the kernel picks a free port: no race with other tests
    port = sock.getsockname()[1]
    options: dict[str, Any] = {}
    if tls is not None:
        options = {"ssl_certfile": str(tls[0]), "ssl_keyfile": str(tls[1])}
    config = uvicorn.Config(
        app, log_level="warning", lifespan=lifespan, timeout_graceful_shutdown=2, **options
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:  # readiness poll, milliseconds in practice
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.005)
    try:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
