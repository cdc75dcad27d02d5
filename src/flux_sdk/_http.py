"""The only I/O: connections, sending one request, the capped read, error mapping.

Nothing here knows about clients, calls or providers beyond a provider's name for the
messages: it takes an ``httpx.Request`` and gives back an ``httpx.Response`` whose body
has been read whole (or raises a `FluxError`).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Callable
from typing import cast

import httpx

from ._connections import Connections
from ._decoding import accepted_encodings, inflate, inflaters
from ._errors import InvalidResponseError, RequestTimeout, TransportError
from ._version import __version__

__all__ = ["DEFAULT_MAX_RESPONSE_BYTES", "DEFAULT_TIMEOUT", "Http"]

DEFAULT_TIMEOUT = httpx.Timeout(120.0, connect=10.0)
"""Per attempt. Generation takes about a second, but Baseten holds a request while it
scales a model up from zero, so reads get two minutes."""
DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024 * 1024
# An error body is only quoted, so reading more than this would be waste.
_ERROR_BODY_LIMIT = 64 * 1024
_DROP_ON_REBUILD = frozenset({b"content-encoding", b"content-length", b"transfer-encoding"})
_OUR_HEADERS = httpx.Headers({"User-Agent": f"flux-sdk-python/{__version__}"})
# An idle connection is dropped after 4 s: servers commonly close theirs after 5 s
# (uvicorn's default, and httpx's own expiry), and a request sent on a connection the
# server is closing at that moment fails although the server never saw it.
_ONE_CONNECTION = httpx.Limits(max_connections=1, max_keepalive_connections=1, keepalive_expiry=4.0)
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
        except httpx.TimeoutException as exc:
            raise RequestTimeout(
                f"{provider} did not answer in time ({_describe(exc)}); raise timeout=... "
                "if the host is slow",
                provider=provider,
                request_sent=not isinstance(exc, _NOT_SENT),
            ) from exc
        except httpx.DecodingError as exc:
            raise InvalidResponseError(
                f"{provider} sent a body that could not be decoded ({_describe(exc)})",
                provider=provider,
            ) from exc
        except (httpx.HTTPError, OSError) as exc:
            raise TransportError(
                f"the connection to {provider} at {request.url.host} failed ({_describe(exc)})",
                provider=provider,
                request_sent=not isinstance(exc, _NOT_SENT),
            ) from exc
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


def _single_connection_clients(timeout: httpx.Timeout) -> Callable[[], httpx.AsyncClient]:
    """A maker of the clients `Connections` hands out: one connection each, one TLS
    context between them (loading the CA certificates costs milliseconds each time)."""
    tls = httpx.create_ssl_context()

    def make() -> httpx.AsyncClient:
        return httpx.AsyncClient(
            timeout=timeout, limits=_ONE_CONNECTION, headers=_OUR_HEADERS, verify=tls
        )

    return make


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
