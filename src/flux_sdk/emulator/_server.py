"""Serve the emulator over real loopback HTTP with uvicorn (an optional dependency)."""

from __future__ import annotations

import asyncio
import ipaddress

from flux_sdk.emulator._app import EmulatorApp


async def serve(
    app: EmulatorApp | None = None, *, host: str = "127.0.0.1", port: int = 8787
) -> None:
    """Serve ``app`` (a default ``EmulatorApp`` if None) until the process is interrupted.

    Runs on asyncio, as uvicorn does. Only loopback hosts are allowed: the emulator
    accepts a fixed, published API key, so it must never face a network.
    """
    _require_loopback(host)
    try:
        import uvicorn
    except ImportError as exc:
        raise RuntimeError(
            "the emulator server needs uvicorn: pip install 'flux-sdk[emulator]'"
        ) from exc
    config = uvicorn.Config(app or EmulatorApp(), host=host, port=port, log_level="warning")
    await uvicorn.Server(config).serve()


def run(app: EmulatorApp | None = None, *, host: str = "127.0.0.1", port: int = 8787) -> None:
    """Blocking form of ``serve``, for scripts and ``python -c``."""
    _require_loopback(host)  # before asyncio.run, so the error is the same from any caller
    asyncio.run(serve(app, host=host, port=port))


def _require_loopback(host: str) -> None:
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(
            f"the emulator only listens on loopback (127.0.0.1, ::1, localhost), not {host!r}: "
            "its API key is public"
        )
