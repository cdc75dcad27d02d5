"""The only I/O: connections, sending one request, the capped read, error mapping.

Nothing here knows about clients, calls or providers beyond a provider's name for the
messages: it takes an ``httpx.Request`` and gives back an ``httpx.Response`` whose body
has been read whole (or raises a `FluxError`).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import cast

import httpx

from flux_sdk._base._errors import (
    BadRequestError,
    FluxError,
    InvalidResponseError,
    RequestTimeout,
    TransportError,
)
from flux_sdk._version import __version__

from ._connections import Connections, LazyTls, Sender, lean_or, reading_client
from ._decoding import accepted_encodings, inflate, inflaters
from ._http11 import KEEPALIVE_EXPIRY
from ._logfilter import FILTER as LOG_FILTER
from ._redact import redact, redact_exception, secrets_of

__all__ = ["DEFAULT_MAX_RESPONSE_BYTES", "DEFAULT_TIMEOUT", "Http"]

DEFAULT_TIMEOUT = httpx.Timeout(120.0, connect=10.0)
"""Per attempt. Generation takes about a second, but Baseten holds a request while it
scales a model up from zero, so reads get two minutes."""
DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024 * 1024
# An error body is only quoted, so reading more than this would be waste.
_ERROR_BODY_LIMIT = 64 * 1024
_WATCHED_BODY = 64 * 1024
_DROP_ON_REBUILD = frozenset({b"content-encoding", b"content-length", b"transfer-encoding"})
_OUR_HEADERS = httpx.Headers({"User-Agent": f"flux-sdk-python/{__version__}"})
# An idle connection is dropped after 4 s: servers commonly close theirs after 5 s
# (uvicorn's default, and httpx's own expiry), and a request sent on a connection the
# server is closing at that moment fails although the server never saw it.
_ONE_CONNECTION = httpx.Limits(
    max_connections=1, max_keepalive_connections=1, keepalive_expiry=KEEPALIVE_EXPIRY
)
# Failures before any byte of the request left: sending it again cannot do anything twice.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)


class Http:
    """Sends requests for one client.

    By default it owns one single-connection ``httpx.AsyncClient`` per request in
    flight, made as concurrency first needs them (see ``_connections.py``); with
    ``http_client`` every request goes through that client, which is left open. With
    ``transport`` (a provider's own, such as the in-process emulator's) every request
    goes through one client made over it; the transport is borrowed, never closed here.
    """

    def __init__(
        self,
        *,
        timeout: httpx.Timeout,
        max_response_bytes: int,
        http_client: httpx.AsyncClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.max_response_bytes = max_response_bytes
        self._timeout = timeout.as_dict()
        self._owned: httpx.AsyncClient | None = None
        if http_client is None and transport is not None:
            # A transport pools (or has no connections) itself: one client is enough.
            self._owned = httpx.AsyncClient(
                transport=_Borrowed(transport), timeout=timeout, headers=_OUR_HEADERS
            )
            self._connections = Connections(shared=self._owned)
            headers = _OUR_HEADERS
        elif http_client is None:
            self._connections = Connections(_single_connection_clients(timeout))
            headers = _OUR_HEADERS
        else:
            self._connections = Connections(shared=http_client)
            headers = http_client.headers
        # Requests come from providers, not from http_client.build_request, so the
        # client's default headers (User-Agent, a user's own) are merged in here.
        self._default_headers = list(headers.multi_items())

    def prepare(self, request: httpx.Request, timeout: httpx.Timeout | None) -> httpx.Request:
        """Add the default headers, and ``timeout`` (else the client's) to a request."""
        for key, value in self._default_headers:
            if key not in request.headers:
                request.headers[key] = value
        if timeout is not None:
            request.extensions["timeout"] = timeout.as_dict()
        else:
            request.extensions.setdefault("timeout", self._timeout)
        accept = request.headers.get("accept-encoding")
        if accept is not None and accept != "gzip, deflate":
            # Never invite an encoding that the capped read cannot inflate within the cap.
            request.headers["accept-encoding"] = accepted_encodings(accept)
        return request

    async def send(self, request: httpx.Request, provider: str) -> httpx.Response:
        """Send one request and read its body, capped, into a new ``httpx.Response``."""
        # The request's own credentials: blanked out of every message built from what
        # the server sent, and out of httpx's and httpcore's log records meanwhile.
        secrets = secrets_of(request)
        if secrets:
            LOG_FILTER.hold(secrets)
        # Only a body larger than a socket's buffers can be cut off by a server that
        # refuses it before reading; the hook costs ~15 us a request, so small ones skip it.
        # A request without a body (a poll, a download) has nothing to be refused, and
        # a trace hook would send it through httpx rather than a lean connection.
        size = request.headers.get("content-length")
        if size is None:
            watched = "transfer-encoding" in request.headers  # a streamed body
        else:
            watched = int(size) > _WATCHED_BODY
        watch = _Watch(request) if watched else None
        http = self._connections.take()
        try:
            try:
                response = await http.send(request, stream=True, follow_redirects=False)
                try:
                    body = await self._read_capped(response, provider)
                finally:
                    await response.aclose()
            finally:
                self._connections.give(http)
        except (httpx.HTTPError, OSError) as exc:
            error: FluxError | None = _mapped(exc, request, provider, secrets, watch)
        else:
            error = None
        finally:
            if secrets:
                LOG_FILTER.drop(secrets)
        if error is not None:
            raise error  # outside the except block: its cause is set by _mapped alone
        headers = [(k, v) for k, v in response.headers.raw if k.lower() not in _DROP_ON_REBUILD]
        return httpx.Response(
            response.status_code,
            headers=headers,
            content=body,
            request=request,
            extensions=response.extensions,
        )

    async def _read_capped(self, response: httpx.Response, provider: str) -> bytes:
        limit = self.max_response_bytes if response.is_success else _ERROR_BODY_LIMIT
        declared = response.headers.get("content-length", "")
        if response.is_success and declared.isdigit() and int(declared) > limit:
            raise self._too_large(provider, f"declares {int(declared)} bytes")
        try:
            # A response built whole (a mock transport's) was read and decoded already.
            whole = response.content
        except httpx.ResponseNotRead:
            pass
        else:
            if len(whole) > limit and response.is_success:
                raise self._too_large(provider, f"ran past {limit} bytes")
            return whole[:limit]
        layers = inflaters(response.headers.get_list("content-encoding", split_commas=True))
        chunks: list[bytes] = []
        size = raw = 0
        # aclosing: leaving the loop early must still finalise httpx's generators (trio
        # reports any that are left for the garbage collector).
        stream = cast("AsyncGenerator[bytes, None]", response.aiter_raw())
        async with contextlib.aclosing(stream) as body:
            async for chunk in body:
                raw += len(chunk)
                size += inflate(layers, chunk, limit - size, chunks)
                if size > limit or raw > limit:
                    if response.is_success:
                        raise self._too_large(provider, f"ran past {limit} bytes")
                    break
        data = b"".join(chunks)
        return data if size <= limit else data[:limit]

    def _too_large(self, provider: str, what: str) -> InvalidResponseError:
        return InvalidResponseError(
            f"{provider}'s response {what}, over the cap of {self.max_response_bytes} "
            "bytes; raise FluxClient(max_response_bytes=...) if images this large are expected",
            provider=provider,
            retryable=False,
        )

    async def aclose(self) -> None:
        await self._connections.aclose()
        if self._owned is not None:
            await self._owned.aclose()


class _Borrowed(httpx.AsyncBaseTransport):
    """Someone else's transport: used, never closed (a provider may serve many clients)."""

    def __init__(self, transport: httpx.AsyncBaseTransport) -> None:
        self._transport = transport

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self._transport.handle_async_request(request)


def _single_connection_clients(timeout: httpx.Timeout) -> Callable[[], Sender]:
    """A maker of the connections `Connections` hands out (lean ones where they can
    stand in for httpx, see `lean_or`), one connection each, one TLS context between
    them (loading the CA certificates costs ~20 ms, so only the first TLS handshake
    loads them)."""
    tls = LazyTls()

    def make() -> httpx.AsyncClient:
        return reading_client(tls, timeout=timeout, limits=_ONE_CONNECTION, headers=_OUR_HEADERS)

    return lean_or(make, tls, timeout)


class _Watch:
    """httpcore's trace hook for one send: whether it opened a new connection, and
    whether writing the request body failed. Any trace hook already set still runs."""

    __slots__ = ("body_failed", "connected", "inner")

    def __init__(self, request: httpx.Request) -> None:
        inner = request.extensions.get("trace")
        self.inner: Callable[[str, dict[str, object]], Awaitable[None]] | None = (
            inner.inner if isinstance(inner, _Watch) else inner
        )
        self.connected = self.body_failed = False
        request.extensions["trace"] = self

    async def __call__(self, name: str, info: dict[str, object]) -> None:
        if name.startswith("connection.connect_") and name.endswith(".complete"):
            self.connected = True
        elif name == "http11.send_request_body.failed":
            self.body_failed = True
        if self.inner is not None:
            await self.inner(name, info)

    @property
    def refused_upload(self) -> bool:
        """The server closed a connection opened for this very request while the body
        was still being written: it refused the request (not a stale keep-alive)."""
        return self.connected and self.body_failed


def _mapped(
    exc: httpx.HTTPError | OSError,
    request: httpx.Request,
    provider: str,
    secrets: tuple[str, ...],
    watch: _Watch | None,
) -> FluxError:
    """The `FluxError` for a failed send, its text and its cause's cleared of ``secrets``."""
    detail = redact(_describe(exc), secrets)
    error: FluxError
    if (
        watch is not None
        and watch.refused_upload
        and isinstance(exc, httpx.NetworkError | httpx.RemoteProtocolError)
    ):
        # httpcore writes the whole body before it reads; a server that answers early
        # (413, 401) and closes is then seen as a broken connection. On asyncio the answer
        # is lost with it; on trio, and with AiohttpTransport, the status itself arrives.
        error = _refused_upload(request, provider, detail)
    elif isinstance(exc, httpx.TimeoutException):
        error = RequestTimeout(
            f"{provider} did not answer in time ({detail}); raise timeout=... if the host is slow",
            provider=provider,
            request_sent=not isinstance(exc, _NOT_SENT),
        )
    elif isinstance(exc, httpx.DecodingError):
        error = InvalidResponseError(
            f"{provider} sent a body that could not be decoded ({detail})",
            provider=provider,
        )
    else:
        error = TransportError(
            f"the connection to {provider} at {request.url.host} failed ({detail})",
            provider=provider,
            request_sent=not isinstance(exc, _NOT_SENT),
        )
    # A library's exception quotes what the server sent; one that still shows a secret
    # once redacted is left out of the chain rather than printed in a traceback.
    error.__cause__ = exc if redact_exception(exc, secrets) else None
    error.__suppress_context__ = True
    return error


_LARGE_BODY = 64 << 10  # a body refused mid-upload over this is taken as too large


def _refused_upload(request: httpx.Request, provider: str, detail: str) -> FluxError:
    """A host that closed while a new connection was still writing the body refused it
    unread. A large body is what gets refused that way (413 Payload Too Large, whose
    status httpcore loses on asyncio): say so, not retried; a small one stays a
    non-retryable `TransportError` (it may have been a 401 sent early)."""
    size = int(request.headers.get("content-length") or 0)
    if size >= _LARGE_BODY:
        return BadRequestError(
            f"{provider} at {request.url.host} refused the request body of {size:,} bytes "
            f"before reading it all ({detail}), as a 413 Payload Too Large does: the body "
            f"is too large for {provider}. Not retried; send a smaller request (smaller "
            "input images)",
            provider=provider,
            status_code=413,
            retryable=False,
            billed="no",
        )
    return TransportError(
        f"{provider} at {request.url.host} closed the connection before reading the "
        f"whole request body ({detail}): it refused the request without a status "
        "flux_sdk could read, most often 413 Payload Too Large. Not retried: the "
        "same body would be refused again; send a smaller request",
        provider=provider,
        request_sent=True,
        retryable=False,
    )


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
