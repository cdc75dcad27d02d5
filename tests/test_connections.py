"""flux_sdk's own connections (``_connections.py``) over real loopback sockets.

They read a body up to 1 MiB at a time through a wrapper around httpcore's network
backend: the bytes must arrive whole and in order however the server splits them, and
proxies from the environment must still be used exactly as httpx would.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from flux_sdk._transport._http import DEFAULT_TIMEOUT, Http
from tests._server import serve

pytestmark = pytest.mark.anyio

# Not a multiple of any read size, in pieces of odd sizes.
BODY = bytes(range(251)) * 12_541
PIECES = (1, 65_535, 65_537, 300_001, 1_048_577)


async def _pieces(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Sends BODY in pieces of PIECES' sizes, then the rest, with a Content-Length."""
    if scope["type"] != "http":
        return
    headers = [(b"content-length", str(len(BODY)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    at = 0
    for size in PIECES:
        await send({"type": "http.response.body", "body": BODY[at : at + size], "more_body": True})
        at += size
    await send({"type": "http.response.body", "body": BODY[at:]})


async def test_a_large_body_arrives_whole_on_reused_connections() -> None:
    http = Http(timeout=DEFAULT_TIMEOUT, max_response_bytes=len(BODY))
    try:
        with serve(_pieces) as url:
            for _ in range(3):  # the same connection, kept alive between requests
                response = await http.send(httpx.Request("GET", url), "test")
                assert response.content == BODY
    finally:
        await http.aclose()


async def test_a_proxy_from_the_environment_is_still_used(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[dict[str, Any]] = []

    async def proxy(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        seen.append(scope)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"via the proxy"})

    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    with serve(proxy) as proxy_url:
        monkeypatch.setenv("HTTP_PROXY", proxy_url)
        http = Http(timeout=DEFAULT_TIMEOUT, max_response_bytes=1024)
        try:
            # A host that cannot resolve: only the proxy can answer for it.
            response = await http.send(httpx.Request("GET", "http://flux.invalid/x"), "test")
        finally:
            await http.aclose()
    assert response.content == b"via the proxy"
    assert dict(seen[0]["headers"])[b"host"] == b"flux.invalid"


class _Stream:
    """An httpcore network stream that records the TLS context it was handed."""

    def __init__(self) -> None:
        self.context: Any = None

    async def start_tls(self, ssl_context: Any, server_hostname: Any, timeout: Any) -> _Stream:
        self.context = ssl_context
        return self


async def test_a_handshake_verifies_with_the_ca_certificates_loaded_on_first_use() -> None:
    from flux_sdk._transport._connections import LazyTls, _LargerReadStream, reading_client

    tls = LazyTls()
    async with reading_client(tls) as client:
        # Built without loading the CA certificates ...
        assert tls._context is None
        backend = client._transport._pool._network_backend  # type: ignore[attr-defined]
        inner = _Stream()
        stream = _LargerReadStream(inner, backend._tls)  # type: ignore[arg-type]
        await stream.start_tls(tls.pending, "example.com", None)
    # ... and the handshake gets the verifying context, never the stand-in.
    assert inner.context is tls.context()
    assert inner.context.verify_mode.name == "CERT_REQUIRED"
    assert inner.context.cert_store_stats()["x509_ca"] > 0


async def test_a_client_through_a_proxy_gets_the_ca_certificates_from_the_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from flux_sdk._transport._connections import LazyTls, reading_client

    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    tls = LazyTls()
    async with reading_client(tls) as client:
        assert tls._context is not None  # the proxy's transport handshakes without our wrapper
        proxies = [t for t in client._mounts.values() if t is not None]
        assert proxies
