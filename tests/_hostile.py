"""A hostile HTTP server on a raw loopback socket, written from scratch for the tests.

It runs in the test's own event loop (asyncio or trio, through anyio), reads each
request's head (and, unless told not to, its body), then writes whatever bytes the test
scripted, malformed on purpose, and closes the connection. Nothing here parses HTTP
beyond finding the end of the head and its Content-Length.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import anyio
import anyio.abc

Answer = Callable[[bytes], "bytes | list[bytes] | None"]


class Hostile:
    """What the server saw: one entry per request, the head of each."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.heads: list[bytes] = []
        self.bodies: list[int] = []
        self._arrived = anyio.Event()

    def _saw(self, head: bytes) -> None:
        self.heads.append(head)
        self._arrived.set()
        self._arrived = anyio.Event()

    async def wait_for(self, requests: int) -> None:
        """Return once at least ``requests`` requests have arrived (no polling)."""
        while len(self.heads) < requests:
            await self._arrived.wait()


@asynccontextmanager
async def hostile_server(answer: Answer, *, read_body: bool = True) -> AsyncIterator[Hostile]:
    """Serve ``answer(head)`` (bytes, or pieces sent one by one) to every request; when
    it returns None the connection stays open and silent until the server stops.

    With ``read_body=False`` it answers as soon as the head has arrived and closes,
    leaving the body unread: the kernel then resets the connection under the client.
    """
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)  # noqa: S610 - anyio, not Django
    seen = Hostile(f"http://127.0.0.1:{port}")

    async def handle(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            data = b""
            try:
                while b"\r\n\r\n" not in data:
                    data += await stream.receive()
                head, _, rest = data.partition(b"\r\n\r\n")
                seen._saw(head)
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value.strip())
                if read_body:
                    while len(rest) < length:
                        rest += await stream.receive()
                seen.bodies.append(len(rest))
                pieces = answer(head)
                if pieces is None:
                    await anyio.sleep_forever()
                    return
                for piece in pieces if isinstance(pieces, list) else [pieces]:
                    await stream.send(piece)
            except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
                pass

    async with listener, anyio.create_task_group() as group:
        group.start_soon(listener.serve, handle)
        try:
            yield seen
        finally:
            group.cancel_scope.cancel()
