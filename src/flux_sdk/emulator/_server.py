"""Serve the emulator over real loopback HTTP with uvicorn (an optional dependency)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import Iterator

from flux_sdk._transport._connections import is_loopback
from flux_sdk.emulator._app import EmulatorApp, logger


async def serve(
    app: EmulatorApp | None = None, *, host: str = "127.0.0.1", port: int = 8787
) -> None:
    """Serve ``app`` (a default ``EmulatorApp`` if None) until the process is interrupted.

    Runs on asyncio, as uvicorn does. Only loopback hosts are allowed: the emulator
    accepts a fixed, published API key, so it must never face a network.

    Each request is logged as one line on stderr (method, path, status, milliseconds),
    unless logging is already configured, in which case the ``flux_sdk.emulator``
    records go where the application sends them.
    """
    _require_loopback(host)
    try:
        import uvicorn
    except ImportError as exc:
        raise RuntimeError(
            "the emulator server needs uvicorn: pip install 'flux-sdk[emulator]'"
        ) from exc
    config = uvicorn.Config(app or EmulatorApp(), host=host, port=port, log_level="warning")
    with _request_lines():
        await uvicorn.Server(config).serve()


def run(app: EmulatorApp | None = None, *, host: str = "127.0.0.1", port: int = 8787) -> None:
    """Blocking form of ``serve``, for scripts and ``python -c``."""
    _require_loopback(host)  # before asyncio.run, so the error is the same from any caller
    asyncio.run(serve(app, host=host, port=port))


def _require_loopback(host: str) -> None:
    if not is_loopback(host):
        raise ValueError(
            f"the emulator only listens on loopback (127.0.0.1, ::1, localhost), not {host!r}: "
            "its API key is public"
        )


@contextlib.contextmanager
def _request_lines() -> Iterator[None]:
    """Show the app's request lines on stderr while serving, if nothing else shows them."""
    level = logger.level
    if level == logging.NOTSET:
        logger.setLevel(logging.INFO)
    handler: logging.Handler | None = None
    if not logger.hasHandlers():  # no handler here or on any ancestor: logging unset
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s emulator: %(message)s"))
        logger.addHandler(handler)
    try:
        yield
    finally:
        logger.setLevel(level)
        if handler is not None:
            logger.removeHandler(handler)
