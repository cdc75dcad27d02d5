"""Connections: one single-connection client per request in flight.

httpcore 1.0's pool walks every connection, and every queued request, each time a
request starts or ends, and when several requests are queued it hands them all the same
idle connection, so all but one go round again. Its cost per request grows with the
pool: 88 us with 1 connection, 835 us with 16, 7.2 ms with 256 (httpcore 1.0, profiled
in 2026-11 with small answers, see docs/benchmarks.md). The concurrency limit already
decides how many requests run at once, so instead of one pool of N connections the
client keeps up to N connections of its own, and a request takes a free one for as long
as it runs: each then only ever sees its own request.

Each is a lean HTTP/1.1 connection (`_http11.Connection`) where that can stand in for
httpx (see `lean_or`), and otherwise a single-connection httpx client. httpcore reads
a body 64 KiB at a time, and every read goes through h11, an anyio cancel scope and
httpx's iterators in Python: ~86 rounds for one 2.8 MB answer. Those httpx clients read
through `larger_reads`, which asks for up to 1 MiB a read; the event loop
hands over what it has (256 KiB at most on asyncio), so a 2 MiB image takes ~11 rounds.

Loading the CA certificates takes ~20 ms, as long as importing httpx itself; `reading_client`
loads them at the first TLS handshake instead of when a client is built, so a client of a
plain-HTTP host (the emulator, a local proxy) never loads them.
"""

from __future__ import annotations

import ipaddress
import ssl
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import httpx

from . import _http11

if TYPE_CHECKING:
    from collections.abc import Iterable

    import httpcore

__all__ = [
    "Connections",
    "LazyTls",
    "Sender",
    "is_loopback",
    "larger_reads",
    "lean_or",
    "reading_client",
]

READ_SIZE = 1024 * 1024


class Sender(Protocol):
    """What `Http` sends through: an httpx client, or a lean `_http11.Connection`."""

    @property
    def is_closed(self) -> bool: ...

    async def send(
        self, request: httpx.Request, *, stream: bool = ..., follow_redirects: bool = ...
    ) -> httpx.Response: ...

    async def aclose(self) -> None: ...


def lean_or(
    make: Callable[[], httpx.AsyncClient], tls: LazyTls, timeout: httpx.Timeout
) -> Callable[[], Sender]:
    """A maker of lean connections, each falling back on a client from ``make`` for what
    it does not send itself; ``make`` itself where lean connections cannot be used."""
    if not _http11.usable():
        return make
    spares = _http11.Spares()
    return lambda: _http11.Connection(tls.context, make, spares, timeout)


class Connections:
    """Single-connection clients on a free list, made as concurrency first needs them.

    ``take`` hands out the most recently returned client (its connection is the warmest)
    or makes one; ``give`` puts it back. With ``shared`` (a client the caller passed in)
    every request uses that one client and it is never closed here.
    """

    def __init__(
        self,
        make: Callable[[], Sender] | None = None,
        *,
        shared: Sender | None = None,
    ) -> None:
        if (make is None) == (shared is None):
            raise ValueError("pass either make or shared")
        self._make = make
        self.shared = shared
        self.clients: list[Sender] = [] if shared is None else [shared]
        self._free: list[Sender] = []

    def take(self) -> Sender:
        if self.shared is not None:
            return self.shared
        if self._free:
            return self._free.pop()
        assert self._make is not None
        client = self._make()
        self.clients.append(client)
        return client

    def give(self, client: Sender) -> None:
        if self.shared is None and not client.is_closed:
            self._free.append(client)

    async def aclose(self) -> None:
        """Close the clients made here (a shared one is the caller's to close)."""
        if self.shared is not None:
            return
        for client in self.clients:
            await client.aclose()


class _Pending(ssl.SSLContext):
    """Stands in for `LazyTls`'s context until a handshake needs it (no CAs: never used)."""


class LazyTls:
    """One TLS context for many clients, its CA certificates loaded on first use."""

    def __init__(self) -> None:
        self.pending = _Pending(ssl.PROTOCOL_TLS_CLIENT)
        self._context: ssl.SSLContext | None = None

    def context(self) -> ssl.SSLContext:
        if self._context is None:
            self._context = httpx.create_ssl_context()
        return self._context


def reading_client(tls: LazyTls, **settings: Any) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient(**settings)`` reading through `larger_reads`, TLS from ``tls``.

    Its own connections get the real context at their handshake. Should httpx keep its
    pool elsewhere, or route through proxies (from the environment, with transports of
    their own), the client gets the real context from the start instead.
    """
    client = httpx.AsyncClient(verify=tls.pending, **settings)
    mounts = getattr(client, "_mounts", None)
    if (mounts is None or any(mounts.values())) or not _wrap(client, tls):
        client = httpx.AsyncClient(verify=tls.context(), **settings)
        larger_reads(client)
    return client


def _wrap(client: httpx.AsyncClient, tls: LazyTls | None) -> bool:
    pool = getattr(getattr(client, "_transport", None), "_pool", None)
    backend = getattr(pool, "_network_backend", None)
    if backend is None:
        return False
    if not isinstance(backend, _LargerReads):
        pool._network_backend = _LargerReads(backend, tls)  # type: ignore[union-attr]
    return True


def larger_reads(client: httpx.AsyncClient) -> httpx.AsyncClient:
    """``client``, its own connections reading up to `READ_SIZE` bytes at a time.

    Only the connections of the client's default transport change: proxies (their own
    transports, from the environment) are left as httpx makes them. Should a later
    httpx keep its pool elsewhere, the client is returned as it is.
    """
    _wrap(client, None)
    return client


class _LargerReads:
    """An httpcore network backend that opens its streams through another one."""

    def __init__(self, inner: httpcore.AsyncNetworkBackend, tls: LazyTls | None) -> None:
        self._inner = inner
        self._tls = tls

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> _LargerReadStream:
        stream = await self._inner.connect_tcp(
            host, port, timeout=timeout, local_address=local_address, socket_options=socket_options
        )
        return _LargerReadStream(stream, self._tls)

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> _LargerReadStream:
        stream = await self._inner.connect_unix_socket(
            path, timeout=timeout, socket_options=socket_options
        )
        return _LargerReadStream(stream, self._tls)

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _LargerReadStream:
    """A network stream whose reads ask for at least `READ_SIZE` bytes."""

    __slots__ = ("_inner", "_tls")

    def __init__(self, inner: httpcore.AsyncNetworkStream, tls: LazyTls | None) -> None:
        self._inner = inner
        self._tls = tls

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self._inner.read(max(max_bytes, READ_SIZE), timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> _LargerReadStream:
        if isinstance(ssl_context, _Pending) and self._tls is not None:
            ssl_context = self._tls.context()
        stream = await self._inner.start_tls(ssl_context, server_hostname, timeout)
        return _LargerReadStream(stream, self._tls)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address, IPv6 with or without brackets) is this
    machine: the one place where plain http is allowed."""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
