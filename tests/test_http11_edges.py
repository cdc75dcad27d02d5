"""The lean HTTP/1.1 connections at their edges: a cap on a chunked body, cancellation,
polls and downloads (no body), TLS keep-alive, the host's time, and when httpx sends
instead (a proxy in the environment). Real loopback sockets, as in test_http11.py."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from flux_sdk import InvalidResponseError
from flux_sdk._transport._http import DEFAULT_TIMEOUT, Http
from flux_sdk._transport._http11 import Connection
from flux_sdk._transport._timing import HOST_TIME
from tests.test_http11 import BODY, ok, raw_server, send

pytestmark = pytest.mark.anyio


async def test_a_chunk_larger_than_the_cap_stops_at_the_cap() -> None:
    """A chunk's size is the server's word: its data is counted against the cap as it
    arrives, not gathered whole first (which a server declaring 1 GiB could make last)."""
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    answer = head + b"40000000\r\n" + BODY[:300_000]  # then nothing more, connection open
    http = Http(timeout=httpx.Timeout(30.0), max_response_bytes=100_000)
    try:
        with (
            raw_server(lambda n: answer) as server,
            pytest.raises(InvalidResponseError, match="ran past 100000 bytes"),
        ):
            await send(http, server.url)
    finally:
        await http.aclose()


@pytest.mark.parametrize("size", [b"-5", b"0x10", b"1 2", b""])
async def test_a_chunk_size_that_is_not_plain_hex_is_refused(size: bytes) -> None:
    answer = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + size + b"\r\nabc\r\n"
    http = Http(timeout=DEFAULT_TIMEOUT, max_response_bytes=1024)
    try:
        with raw_server(lambda n: answer, close_after=True) as server:
            with pytest.raises(Exception, match="the connection to test") as caught:
                await send(http, server.url)
            assert "RemoteProtocolError" in str(caught.value)
    finally:
        await http.aclose()


async def test_a_cancelled_request_drops_its_connection_and_the_next_one_works() -> None:
    arrived = threading.Event()

    def answer(n: int) -> bytes | None:
        if n == 1:
            arrived.set()
            return None  # never answers the first request
        return ok(b"second")

    http = Http(timeout=DEFAULT_TIMEOUT, max_response_bytes=1024)
    try:
        with raw_server(answer) as server:
            scope = anyio.CancelScope()

            async def first() -> None:
                with scope:
                    await send(http, server.url)

            async with anyio.create_task_group() as group:
                group.start_soon(first)
                await anyio.to_thread.run_sync(arrived.wait)
                scope.cancel()
            assert scope.cancelled_caught
            (connection,) = http._connections.clients
            assert isinstance(connection, Connection)
            assert connection.sock is None  # not left half-read
            assert not connection.busy
            assert (await send(http, server.url)).content == b"second"
            assert server.connections == 2
    finally:
        await http.aclose()


async def test_a_request_without_a_body_goes_through_the_lean_connection() -> None:
    """Polls and downloads (GET) too: they need no upload watch, so no httpx client."""
    http = Http(timeout=DEFAULT_TIMEOUT, max_response_bytes=len(BODY))
    try:
        with raw_server(lambda n: ok(BODY)) as server:
            for _ in range(2):
                response = await http.send(httpx.Request("GET", server.url + "/poll"), "test")
                assert response.content == BODY
            (connection,) = http._connections.clients
            assert isinstance(connection, Connection)
            assert connection.fallback is None
            assert server.connections == 1
    finally:
        await http.aclose()


async def test_the_host_time_is_recorded_on_the_response() -> None:
    http = Http(timeout=DEFAULT_TIMEOUT, max_response_bytes=1024)
    try:
        with raw_server(lambda n: ok(b"fine")) as server:
            response = await send(http, server.url)
        written, answered = response.extensions[HOST_TIME]
        assert 0 < written <= answered
    finally:
        await http.aclose()


async def test_a_proxy_in_the_environment_sends_through_httpx(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """httpx honours HTTP(S)_PROXY and NO_PROXY; the lean connections do not, so with a
    proxy set every request goes through httpx (here direct, by NO_PROXY)."""
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    http = Http(timeout=DEFAULT_TIMEOUT, max_response_bytes=1024)
    try:
        with raw_server(lambda n: ok(b"direct")) as server:
            assert (await send(http, server.url)).content == b"direct"
        (client,) = http._connections.clients
        assert isinstance(client, httpx.AsyncClient)
    finally:
        await http.aclose()


async def test_an_https_connection_is_kept_between_requests(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over TLS 1.3 the server's session tickets leave an idle socket readable without
    any data: that is no reason to drop it."""
    from tests._server import serve
    from tests._tls import throwaway_certificate

    ca, cert, key = throwaway_certificate(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(ca))

    async def app(scope: dict[str, Any], receive: Any, send_: Any) -> None:
        await send_({"type": "http.response.start", "status": 200, "headers": []})
        await send_({"type": "http.response.body", "body": b"secure"})

    http = Http(timeout=DEFAULT_TIMEOUT, max_response_bytes=1024)
    try:
        with serve(app, tls=(cert, key), lifespan="off") as url:
            assert (await send(http, url)).content == b"secure"
            (connection,) = http._connections.clients
            assert isinstance(connection, Connection)
            first = connection.sock
            assert first is not None
            for _ in range(2):
                assert (await send(http, url)).content == b"secure"
                assert connection.sock is first
            await http.aclose()  # before the server stops: it waits for open connections
    finally:
        await http.aclose()
