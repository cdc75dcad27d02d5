"""An httpx transport that sends through aiohttp: faster bodies, asyncio only.

httpx hands a 2.8 MB answer over in pieces, each through httpcore, h11 (which copies it
in and out of its buffer) and an anyio cancel scope in Python: ~86 pieces with httpx's
defaults, ~11 on flux_sdk's own connections (see ``_connections.py``). aiohttp parses in
C and hands it over in a few large pieces: on asyncio it still saves a fifth to a third
of the client's CPU per 2 MiB image (docs/benchmarks.md). This transport keeps httpx's
request and response objects, so everything above it (providers, middleware, the size
cap) is the same. Install with ``pip install 'flux-sdk[aiohttp]'``.
"""

from __future__ import annotations

import asyncio
import io
import ssl
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import httpx

from flux_sdk._base._errors import ConfigError
from flux_sdk._base._loops import running_trio

if TYPE_CHECKING:
    import aiohttp

__all__ = ["AiohttpTransport"]

_LARGE_BODY = 1024 * 1024  # aiohttp's own threshold for its warning


class AiohttpTransport(httpx.AsyncBaseTransport):
    """Send httpx requests with aiohttp, for speed on asyncio (not trio).

    Use it through an httpx client::

        http = httpx.AsyncClient(transport=AiohttpTransport(), timeout=DEFAULT_TIMEOUT)
        async with FluxClient(Dataoorts(), http_client=http) as client: ...
        await http.aclose()

    Bodies come back undecoded (flux_sdk inflates gzip within its size cap), redirects
    are not followed, and cookies are not kept. ``limit`` caps the connections (0: no
    cap; `FluxClient`'s concurrency limit already bounds them); ``verify`` is True, False,
    or an ``ssl.SSLContext``.
    """

    def __init__(self, *, limit: int = 0, verify: bool | ssl.SSLContext = True) -> None:
        try:
            import aiohttp
            import yarl
        except ModuleNotFoundError:
            raise ModuleNotFoundError(
                "AiohttpTransport needs aiohttp: pip install 'flux-sdk[aiohttp]'"
            ) from None
        self._aiohttp = aiohttp
        self._url = yarl.URL
        self._limit = limit
        self._verify = verify
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        if running_trio():
            raise ConfigError(
                "AiohttpTransport runs on asyncio only; under trio leave out "
                "http_client and FluxClient uses httpx's own transport"
            )
        aiohttp = self._aiohttp
        # Made on first use: aiohttp binds a session to the running event loop.
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self._limit, ssl=self._verify),
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),
            timeout=aiohttp.ClientTimeout(total=None),
            skip_auto_headers=("User-Agent", "Accept-Encoding", "Content-Type"),
        )
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        aiohttp = self._aiohttp
        session = self._session or self._open()
        limits = request.extensions.get("timeout", {})
        timeout = aiohttp.ClientTimeout(
            total=None,
            connect=limits.get("pool"),
            sock_connect=limits.get("connect"),
            sock_read=limits.get("read"),
        )
        content = await request.aread()
        # aiohttp warns (a ResourceWarning, an error under -W error) about large raw
        # bytes and asks for a file-like object, which it writes in pieces.
        body = io.BytesIO(content) if len(content) > _LARGE_BODY else content
        try:
            response = await session.request(
                request.method,
                self._url(str(request.url), encoded=True),
                headers=list(request.headers.multi_items()),
                data=body,
                allow_redirects=False,
                timeout=timeout,
                server_hostname=request.extensions.get("sni_hostname"),  # a pinned download
            )
        except Exception as exc:
            mapped = _mapped(exc, request, connecting=True)
            if mapped is exc:
                raise
            raise mapped from exc
        return httpx.Response(
            response.status,
            headers=[(k, v) for k, v in response.raw_headers],
            stream=_Body(response, request),
            request=request,
            extensions={
                "http_version": b"HTTP/1.1",
                "reason_phrase": (response.reason or "").encode(),
            },
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class _Body(httpx.AsyncByteStream):
    def __init__(self, response: aiohttp.ClientResponse, request: httpx.Request) -> None:
        self._response = response
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except Exception as exc:
            mapped = _mapped(exc, self._request, connecting=False)
            if mapped is exc:
                raise
            raise mapped from exc

    async def aclose(self) -> None:
        # An unfinished body closes its connection; a finished one goes back to the pool.
        self._response.release()


def _mapped(exc: Exception, request: httpx.Request, *, connecting: bool) -> Exception:
    """aiohttp's exception as the httpx one the client maps to a FluxError."""
    import aiohttp

    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return httpx.ConnectTimeout(str(exc) or "connect timeout", request=request)
    if isinstance(exc, asyncio.TimeoutError):
        return httpx.ReadTimeout(str(exc) or "read timeout", request=request)
    if isinstance(exc, (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError)):
        return httpx.RemoteProtocolError(str(exc), request=request)
    if isinstance(exc, aiohttp.ClientConnectorError) and connecting:
        return httpx.ConnectError(str(exc), request=request)
    if isinstance(exc, (aiohttp.ClientError, OSError)):
        return httpx.ReadError(str(exc) or type(exc).__name__, request=request)
    return exc
