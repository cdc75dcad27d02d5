"""Fixtures for the tests that need more than one process: a real Redis server.

``redis-server`` (Debian's package; ``.ci/run`` installs it) is started on a free
loopback port with a temporary directory and no persistence, once for the session, and
stopped after. Where it cannot be had the tests say so and skip; under ``CI=true`` they
fail instead, so CI cannot pass without having run them.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if Path(str(item.fspath)).is_relative_to(here):
            item.add_marker(pytest.mark.scale)


def missing(what: str) -> None:
    """Skip, loudly; under CI=true, fail."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} (CI=true: the scale tests must run in CI)")
    warnings.warn(f"SKIPPING scale tests: {what}", pytest.PytestWarning, stacklevel=2)
    pytest.skip(f"{what}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def redis_on(port: int, directory: Path, *extra: str) -> Iterator[subprocess.Popen[bytes]]:
    """A redis-server on loopback ``port``, no persistence, killed on exit (a test may
    kill it earlier and start another on the same port); ``extra`` are more of its
    arguments (``"--requirepass", "pw"``)."""
    binary = shutil.which("redis-server")
    if binary is None:
        missing("no redis-server on PATH (apt-get install -y redis-server)")
    assert binary is not None
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", str(directory), *extra]  # fmt: skip
    server = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while True:  # readiness of the server we started: milliseconds in practice
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    missing(f"redis-server did not start on port {port}")
                time.sleep(0.01)
        yield server
    finally:
        server.kill()
        server.wait(timeout=10)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A fresh redis-server on loopback for the session; its URL."""
    pytest.importorskip("redis", reason="pip install 'flux-sdk[redis]'")
    port = free_port()
    with redis_on(port, tmp_path_factory.mktemp("redis")):
        yield f"redis://127.0.0.1:{port}/0"
