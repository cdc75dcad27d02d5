"""A lean HTTP/1.1 connection for flux_sdk's own requests, on a non-blocking socket.

At 8 requests in flight with 2 MiB images, httpx, httpcore and h11 took most of
flux_sdk's CPU per image (benchmarks/profile_client.py flux_sdk 2mib 8, 2026-12): h11
copies every piece of a body into its buffer and out again, and each of the ~11 reads of
a 2.8 MB answer passes through an anyio cancel scope, httpcore and httpx's iterators.
Here a request is written in one ``send`` and the answer is read with ``recv`` straight
from the socket, as large as the kernel has it; a wait (and its timeout) only happens
when the socket has nothing yet. ``anyio.wait_readable`` and ``wait_writable`` make it
work on asyncio and trio alike.

It stands in for httpx only where it behaves the same: requests with a small body
already in memory and no extensions but a timeout (and flux_sdk's own), on http or
https, with no proxy in the environment and no mock library (respx, pytest-httpx)
patching httpx or httpcore. Anything else (a large upload, whose early refusal `_http`
reads from httpcore's trace; a download's ``sni_hostname``) goes through a
single-connection httpx client, made on first need. Errors are httpx's own exception
types, so `_http` maps them alike.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import select
import socket
import ssl
import sys
import time
from collections.abc import Callable

import anyio
import httpx

from ._http11_io import (
    WHOLE,
    Body,
    Spares,
    framing,
    parse_head,
    read_head,
    send_all,
    wait_readable,
    wait_writable,
)
from ._timing import HOST_TIME

__all__ = ["KEEPALIVE_EXPIRY", "Connection", "Spares", "usable"]

KEEPALIVE_EXPIRY = 4.0  # as the httpx clients in _http: servers often close at 5 s
_SMALL_BODY = 64 * 1024  # a larger request body goes through httpx (see the docstring)
_HTTPX_LOG = logging.getLogger("httpx")


def usable() -> bool:
    """Whether this process can use it at all: not on Windows (asyncio's proactor loop
    cannot wait on a socket), and not with a proxy set, which httpx would use."""
    from urllib.request import getproxies

    return sys.platform != "win32" and not getproxies()


def _unpatched() -> bool:
    """No mock library has replaced httpx's or httpcore's sending: a test that mocks
    them must see flux_sdk's requests. httpcore is not imported for this (it loads trio,
    when installed, for 60 ms): a library that patched it has imported it."""
    transport = httpx.AsyncHTTPTransport.handle_async_request
    if getattr(transport, "__module__", None) != "httpx._transports.default":
        return False
    pools = sys.modules.get("httpcore._async.connection_pool")
    if pools is None:
        return True
    pool = pools.AsyncConnectionPool.handle_async_request
    return getattr(pool, "__module__", None) == "httpcore._async.connection_pool"


class Connection:
    """One keep-alive connection, opened again for a new origin or once it went stale;
    ``send`` takes what `Http` gives an httpx client and answers with a streamed
    ``httpx.Response``. One request at a time (`Connections` hands it to one sender)."""

    def __init__(
        self,
        tls: Callable[[], ssl.SSLContext],
        fallback: Callable[[], httpx.AsyncClient],
        spares: Spares,
        timeout: httpx.Timeout,
    ) -> None:
        self._tls = tls
        self._timeouts = timeout.as_dict()  # for a request that names none
        self.spares = spares
        self._make_fallback = fallback
        self.fallback: httpx.AsyncClient | None = None
        self.sock: socket.socket | None = None
        self._origin: tuple[str, str, int] | None = None
        self._idle_since = 0.0
        self.busy = False
        self.is_closed = False

    async def send(
        self, request: httpx.Request, *, stream: bool = True, follow_redirects: bool = False
    ) -> httpx.Response:
        body = _lean_body(request)
        if body is None or not stream or follow_redirects:
            if self.fallback is None:
                self.fallback = self._make_fallback()
            return await self.fallback.send(
                request, stream=stream, follow_redirects=follow_redirects
            )
        timeouts: dict[str, float | None] = request.extensions.get("timeout", self._timeouts)
        self.busy = True
        try:
            sock = await self._ready(request.url, timeouts.get("connect"))
            await send_all(sock, _head(request) + body, timeouts.get("write"))
            written = time.monotonic()
            return await self._response(sock, request, timeouts.get("read"), written)
        except BaseException:
            self.drop()
            raise

    async def _ready(self, url: httpx.URL, connect_limit: float | None) -> socket.socket:
        host = url.raw_host.decode("ascii")
        origin = (url.scheme, host, url.port or (443 if url.scheme == "https" else 80))
        if self.sock is not None:
            fresh = time.monotonic() - self._idle_since < KEEPALIVE_EXPIRY
            if origin == self._origin and fresh and _alive(self.sock):
                return self.sock
            self.drop()
        try:
            with anyio.fail_after(connect_limit):
                sock = await _connect(host, origin[2])
                if url.scheme == "https":
                    sock = await _handshake(sock, self._tls(), host)
        except TimeoutError:
            raise httpx.ConnectTimeout(f"connecting to {host}:{origin[2]} timed out") from None
        self.sock, self._origin = sock, origin
        return sock

    async def _response(
        self, sock: socket.socket, request: httpx.Request, wait_limit: float | None, written: float
    ) -> httpx.Response:
        buffer = bytearray()
        while True:
            end = await read_head(sock, buffer, wait_limit)
            version, status, reason, headers = parse_head(bytes(buffer[:end]))
            del buffer[: end + 4]
            if status >= 200:
                break
            if status == 101:
                raise httpx.RemoteProtocolError("the server switched protocols unasked")
        answered = time.monotonic()
        if _HTTPX_LOG.isEnabledFor(logging.INFO):  # the line httpx logs for each request
            _HTTPX_LOG.info(
                'HTTP Request: %s %s "%s %d %s"',
                request.method,
                request.url,
                version.decode("ascii"),
                status,
                reason.decode("latin-1"),
            )
        names = {name.lower(): value for name, value in headers}
        how, length = framing(request.method, status, headers, names)
        keep = (
            version == b"HTTP/1.1"
            and how != "close"
            and b"close" not in names.get(b"connection", b"").lower()
            and b"close" not in request.headers.get("connection", "").lower().encode()
        )
        body = Body(self, sock, bytes(buffer), how, length, keep, wait_limit)
        # A success's body is read into one buffer when it is not huge (the caller's cap
        # is checked against its Content-Length first) and not compressed; anything
        # else in pieces, so that a cap on an error body or on what a compressed body
        # inflates to stops the reading early.
        body.whole = (
            200 <= status < 300
            and how == "length"
            and length <= WHOLE
            and names.get(b"content-encoding", b"identity").lower() == b"identity"
        )
        extensions = {
            "http_version": version,
            "reason_phrase": reason,
            HOST_TIME: (written, answered),
        }
        return httpx.Response(
            status, headers=headers, stream=body, request=request, extensions=extensions
        )

    def finished(self, keep: bool) -> None:
        self.busy = False
        if keep:
            self._idle_since = time.monotonic()
        else:
            self.drop()

    def drop(self) -> None:
        self.busy = False
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    async def aclose(self) -> None:
        self.drop()
        self.is_closed = True
        self.spares.clear()  # shared by the client's connections, which all close now
        if self.fallback is not None:
            await self.fallback.aclose()


def _lean_body(request: httpx.Request) -> bytes | None:
    """The body to send, or None when this request must go through httpx."""
    if request.url.scheme not in ("http", "https") or not _unpatched():
        return None
    if any(key != "timeout" and not key.startswith("flux_sdk.") for key in request.extensions):
        return None
    try:
        content = request.content
    except httpx.RequestNotRead:
        return None
    return content if len(content) <= _SMALL_BODY else None


def _head(request: httpx.Request) -> bytes:
    parts = [request.method.encode("ascii"), b" ", request.url.raw_path, b" HTTP/1.1\r\n"]
    for name, value in request.headers.raw:
        if b"\r" in value or b"\n" in value or b"\0" in value or b":" in name:
            raise httpx.LocalProtocolError("a request header holds CR, LF, NUL or a colon")
        parts += (name, b": ", value, b"\r\n")
    parts.append(b"\r\n")
    return b"".join(parts)


def _alive(sock: socket.socket) -> bool:
    """Whether an idle connection can take a request: nothing to read on it, else the
    server closed it (or sent what no request asked for). Over TLS, readable may be
    only a record with no data (TLS 1.3 sends session tickets after the handshake)."""
    poll = select.poll()
    poll.register(sock, select.POLLIN)
    if not poll.poll(0):
        return True
    if not isinstance(sock, ssl.SSLSocket):
        return False
    try:
        sock.recv(1)  # data or the end: not usable either way
    except ssl.SSLWantReadError:
        return True  # records without data, read and gone
    except (ssl.SSLError, OSError):
        pass
    return False


async def _connect(host: str, port: int) -> socket.socket:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        try:
            found = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise httpx.ConnectError(f"{host}: {exc}") from exc
        targets = [(family, sockaddr) for family, _, _, _, sockaddr in found]
    else:
        family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
        targets = [(family, (host, port))]
    problem: OSError | None = None
    for family, sockaddr in targets:
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            code = sock.connect_ex(sockaddr)
            if code in (errno.EINPROGRESS, errno.EAGAIN, errno.EWOULDBLOCK):
                await wait_writable(sock)
                code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if code:
                raise OSError(code, errno.errorcode.get(code, "connect failed"))
        except OSError as exc:
            sock.close()
            problem = exc
            continue
        except BaseException:
            sock.close()
            raise
        return sock
    raise httpx.ConnectError(f"{host}:{port}: {problem}")


async def _handshake(sock: socket.socket, tls: ssl.SSLContext, host: str) -> ssl.SSLSocket:
    tls.set_alpn_protocols(["http/1.1"])  # as httpcore sets it on the shared context
    try:
        secure = tls.wrap_socket(sock, server_hostname=host, do_handshake_on_connect=False)
    except BaseException:
        sock.close()
        raise
    try:
        while True:
            try:
                secure.do_handshake()
                return secure
            except ssl.SSLWantReadError:
                await wait_readable(secure)
            except ssl.SSLWantWriteError:
                await wait_writable(secure)
    except (ssl.SSLError, OSError) as exc:
        secure.close()
        raise httpx.ConnectError(str(exc)) from exc
    except BaseException:
        secure.close()
        raise
