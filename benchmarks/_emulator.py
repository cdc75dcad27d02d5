"""The emulator for bench.py: uvicorn on loopback, in a process of its own.

The same app and server that ``flux-sdk emulator`` runs, with one difference: idle
keep-alive connections are kept for 10 minutes instead of uvicorn's 5 seconds. A client
whose pool holds more connections than it keeps busy (httpx at 256 in flight) would
otherwise race the server's close of an idle connection, and a raw client without
retries fails the whole measurement on that race. Every client gets the same server.

    python benchmarks/_emulator.py PORT IMAGE_BYTES DEFAULT_SIZE
"""

from __future__ import annotations

import sys

import uvicorn

from flux_sdk.emulator import EmulatorApp


def main() -> None:
    port, image_bytes, default_size = (int(arg) for arg in sys.argv[1:4])
    app = EmulatorApp(image_bytes=image_bytes, default_size=default_size)
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        timeout_keep_alive=600,
        # Explicit, so that uvloop or httptools being installed cannot change the server.
        loop="asyncio",
        http="h11",
    )
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
