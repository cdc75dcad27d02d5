"""Reading and writing for `_http11`: waits on a non-blocking socket, the response's
head, and its body however it is framed (RFC 9112: a length, chunks, or the close).

Errors never quote what the server sent: a hostile server may echo the API key back in
a status line or a chunk header, cut where no redaction would recognise it.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from functools import partial
from typing import Any, Protocol, TypeVar

import anyio
import httpx

__all__ = [
    "WHOLE",
    "Body",
    "Owner",
    "Spares",
    "framing",
    "parse_head",
    "read_head",
    "recv",
    "send_all",
    "wait_readable",
    "wait_writable",
]

T = TypeVar("T")
HEAD_LIMIT = 64 * 1024
_READ = 256 * 1024
WHOLE = 16 * 1024 * 1024  # a success's body up to this is read into one buffer
_SPARES_BYTES = 32 * 1024 * 1024
_HEX = frozenset(b"0123456789abcdefABCDEF")


def wait_readable(sock: socket.socket) -> Any:
    """anyio's wait for a readable socket (``wait_socket_readable`` before anyio 4.7),
    looked up when first needed: anyio loads its socket functions on first access."""
    wait = getattr(anyio, "wait_readable", None) or anyio.wait_socket_readable
    return wait(sock)


def wait_writable(sock: socket.socket) -> Any:
    """`wait_readable` for writing."""
    wait = getattr(anyio, "wait_writable", None) or anyio.wait_socket_writable
    return wait(sock)


class Spares:
    """Receive buffers kept between answers, up to `_SPARES_BYTES` in all, shared by one
    client's connections.

    A fresh multi-megabyte buffer costs a page fault per 4 KiB page as it is first
    written (about 700 for a 2.8 MB answer, a few microseconds each on a virtual
    machine): more than parsing the answer. A buffer taken from here was written before;
    the body is copied out of it once, into memory the allocator hands back from the
    previous body. With a fresh ``bytearray`` per answer instead, bench.py --floor8
    measured 1,340 page faults and 6.1 ms of CPU per 2 MiB image; with these, none and
    3.0 ms (2026-12). The price: up to 32 MiB kept per client while it is open.
    """

    def __init__(self) -> None:
        self._free: list[bytearray] = []
        self._bytes = 0

    def take(self, size: int) -> bytearray:
        buffer = self._free.pop() if self._free else bytearray()
        self._bytes -= len(buffer)
        if len(buffer) < size:
            buffer.extend(bytes(size - len(buffer)))
        return buffer

    def give(self, buffer: bytearray) -> None:
        if self._bytes + len(buffer) <= _SPARES_BYTES:
            self._free.append(buffer)
            self._bytes += len(buffer)

    def clear(self) -> None:
        self._free.clear()
        self._bytes = 0


class Owner(Protocol):
    """What a `Body` needs of its connection (`_http11.Connection`)."""

    spares: Spares

    def finished(self, keep: bool) -> None: ...

    def drop(self) -> None: ...


async def _io(
    sock: socket.socket, call: Callable[[], T], wait_limit: float | None, writing: bool
) -> T:
    """``call()`` (a non-blocking send or receive) once the socket is ready for it:
    tried at once, and waited for (up to ``wait_limit`` seconds) only when it would block."""
    while True:
        try:
            return call()
        except (BlockingIOError, InterruptedError):
            ready = wait_writable if writing else wait_readable
        except ssl.SSLWantReadError:
            ready = wait_readable
        except ssl.SSLWantWriteError:
            ready = wait_writable
        with anyio.fail_after(wait_limit):
            await ready(sock)


async def send_all(sock: socket.socket, data: bytes, wait_limit: float | None) -> None:
    view = memoryview(data)
    try:
        while view:
            view = view[await _io(sock, partial(sock.send, view), wait_limit, writing=True) :]
    except TimeoutError:
        raise httpx.WriteTimeout("writing the request timed out") from None
    except OSError as exc:
        raise httpx.WriteError(str(exc) or type(exc).__name__) from exc


async def recv(sock: socket.socket, size: int, wait_limit: float | None) -> bytes:
    """What the socket has, up to ``size`` bytes (b"" at its end)."""
    return await _read(sock, partial(sock.recv, size), wait_limit)


async def recv_into(sock: socket.socket, view: memoryview, wait_limit: float | None) -> int:
    """`recv` into ``view``: how many bytes arrived (0 at the end of the stream)."""
    return await _read(sock, partial(sock.recv_into, view), wait_limit)


async def _read(sock: socket.socket, op: Callable[[], T], wait_limit: float | None) -> T:
    """One read, its socket errors told as httpx's read errors."""
    try:
        return await _io(sock, op, wait_limit, writing=False)
    except TimeoutError:
        raise httpx.ReadTimeout("reading the response timed out") from None
    except OSError as exc:
        raise httpx.ReadError(str(exc) or type(exc).__name__) from exc


async def read_head(sock: socket.socket, buffer: bytearray, wait_limit: float | None) -> int:
    """Read until ``buffer`` holds a whole status line and headers; where they end."""
    searched = 0
    while (end := buffer.find(b"\r\n\r\n", searched)) < 0:
        if len(buffer) > HEAD_LIMIT:
            raise httpx.RemoteProtocolError("the response's headers are too long")
        searched = max(0, len(buffer) - 3)
        piece = await recv(sock, HEAD_LIMIT, wait_limit)
        if not piece:
            raise httpx.RemoteProtocolError("Server disconnected without sending a response.")
        buffer += piece
    return end


def parse_head(head: bytes) -> tuple[bytes, int, bytes, list[tuple[bytes, bytes]]]:
    lines = head.split(b"\r\n")
    version, _, rest = lines[0].partition(b" ")
    code, _, reason = rest.partition(b" ")
    if version not in (b"HTTP/1.1", b"HTTP/1.0") or len(code) != 3 or not code.isdigit():
        raise httpx.RemoteProtocolError("the status line is malformed")
    headers = []
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not name or name != name.strip() or b" " in name or b"\t" in name:
            raise httpx.RemoteProtocolError("a header line is malformed")
        headers.append((name, value.strip(b" \t")))
    return version, int(code), reason, headers


def framing(
    method: str, status: int, headers: list[tuple[bytes, bytes]], names: dict[bytes, bytes]
) -> tuple[str, int]:
    """How the body is delimited (RFC 9112, 6.3): "none", "length", "chunked" or "close"."""
    if method == "HEAD" or status in (204, 304):
        return "none", 0
    coding = names.get(b"transfer-encoding")
    if coding is not None:
        chunked = coding.lower().rsplit(b",", 1)[-1].strip() == b"chunked"
        return ("chunked" if chunked else "close"), 0
    lengths = {value for name, value in headers if name.lower() == b"content-length"}
    if not lengths:
        return "close", 0
    if len(lengths) > 1 or not next(iter(lengths)).isdigit():
        raise httpx.RemoteProtocolError("the Content-Length is malformed or repeated")
    return "length", int(next(iter(lengths)))


class Body(httpx.AsyncByteStream):
    """The body as it arrives; the connection is reused only once it was read whole."""

    def __init__(
        self,
        owner: Owner,
        sock: socket.socket,
        start: bytes,
        how: str,
        length: int,
        keep: bool,
        wait_limit: float | None,
    ) -> None:
        self._owner, self._sock, self._start = owner, sock, start
        self._framing, self._length, self._keep, self._limit = how, length, keep, wait_limit
        self._done = False
        self._iterator: AsyncGenerator[bytes, None] | None = None
        self.whole = False

    def __aiter__(self) -> AsyncIterator[bytes]:
        self._iterator = self._all()
        return self._iterator

    async def _all(self) -> AsyncGenerator[bytes, None]:
        framings = {"length": self._sized, "chunked": self._chunked, "close": self._until_close}
        read = framings.get(self._framing)
        try:
            if read is not None:
                async with contextlib.aclosing(read()) as pieces:
                    async for piece in pieces:
                        yield piece
            elif self._start:
                self._keep = False  # bytes where no body belongs: trust nothing after them
        except BaseException:
            self._done = True
            self._owner.drop()
            raise
        self._done = True
        self._owner.finished(self._keep)

    async def _sized(self) -> AsyncGenerator[bytes, None]:
        if self.whole:
            yield await self._read_whole()
            return
        remaining = self._length
        if self._start:
            if len(self._start) > remaining:
                self._keep = False
            piece = self._start[:remaining]
            remaining -= len(piece)
            yield piece
        while remaining:
            piece = await recv(self._sock, min(remaining, _READ), self._limit)
            if not piece:
                raise _cut_short(self._length - remaining, self._length)
            remaining -= len(piece)
            yield piece

    async def _read_whole(self) -> bytes:
        """The whole body, received into a spare buffer, then copied out once."""
        length, start = self._length, self._start
        if len(start) >= length:
            self._keep = self._keep and len(start) == length
            return start[:length]
        spares = self._owner.spares
        buffer = spares.take(length)  # not given back if the reading fails
        with memoryview(buffer) as whole:
            whole[: len(start)] = start
            at = len(start)
            while at < length:
                with whole[at:length] as rest:
                    got = await recv_into(self._sock, rest, self._limit)
                if not got:
                    raise _cut_short(at, length)
                at += got
            with whole[:length] as received:
                body = bytes(received)
        spares.give(buffer)
        return body

    async def _until_close(self) -> AsyncGenerator[bytes, None]:
        self._keep = False
        if self._start:
            yield self._start
        while piece := await recv(self._sock, _READ, self._limit):
            yield piece

    async def _chunked(self) -> AsyncGenerator[bytes, None]:
        """Each chunk's data as it arrives, never a whole chunk held first: a chunk's
        declared size is the server's word, and the caller's cap must stop the reading."""
        buffer = bytearray(self._start)
        while True:
            size_text = (await self._line(buffer)).split(b";", 1)[0].strip(b" \t")
            if not size_text or not _HEX.issuperset(size_text) or len(size_text) > 16:
                raise httpx.RemoteProtocolError("a chunk size is malformed")
            size = int(size_text, 16)
            if size == 0:
                while await self._line(buffer):  # trailers, up to the empty line
                    pass
                if buffer:
                    self._keep = False
                return
            while size:
                if not buffer:
                    await self._more(buffer)
                piece = bytes(buffer[:size])
                del buffer[: len(piece)]
                size -= len(piece)
                yield piece
            while len(buffer) < 2:
                await self._more(buffer)
            if buffer[:2] != b"\r\n":
                raise httpx.RemoteProtocolError("a chunk does not end with CRLF")
            del buffer[:2]

    async def _line(self, buffer: bytearray) -> bytes:
        while (end := buffer.find(b"\r\n")) < 0:
            if len(buffer) > HEAD_LIMIT:
                raise httpx.RemoteProtocolError("a chunk header is too long")
            await self._more(buffer)
        line = bytes(buffer[:end])
        del buffer[: end + 2]
        return line

    async def _more(self, buffer: bytearray) -> None:
        piece = await recv(self._sock, _READ, self._limit)
        if not piece:
            raise httpx.RemoteProtocolError(
                "peer closed connection without sending complete message body"
            )
        buffer += piece

    async def aclose(self) -> None:
        if self._iterator is not None:
            await self._iterator.aclose()
        if not self._done:
            self._done = True
            self._owner.drop()


def _cut_short(received: int, expected: int) -> httpx.RemoteProtocolError:
    return httpx.RemoteProtocolError(
        "peer closed connection without sending complete message body: "
        f"received {received} bytes, expected {expected}"
    )
