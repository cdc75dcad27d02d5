"""flux_sdk's lean HTTP/1.1 connections (``_http11.py``) against servers that answer in
every framing HTTP/1.1 allows, over real loopback sockets (and TLS).

Each test sends through `Http`, as `FluxClient` does, and checks what a caller relies
on: the body arrives whole however it is framed, a connection is reused only when that
is safe, and each way a server can fail is the flux_sdk error a retry decision needs.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from flux_sdk import RequestTimeout, TransportError
from flux_sdk._transport._http import DEFAULT_TIMEOUT, Http
from flux_sdk._transport._http11 import Connection

pytestmark = pytest.mark.anyio

Answer = Callable[[int], bytes | None]  # request number -> bytes to send (None: close)


class RawServer:
    """Answers each request with the bytes ``answer`` gives for its number, then keeps
    the connection open (or closes it when told to); counts the connections accepted."""

    def __init__(self, answer: Answer, close_after: bool = False) -> None:
        self.answer, self.close_after = answer, close_after
        self.connections = 0
        self.requests = 0
        self.stop = threading.Event()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.threads: list[threading.Thread] = []
        self.closed = threading.Semaphore(0)  # released as each connection is closed here

    def run(self) -> None:
        self.sock.settimeout(0.05)
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.connections += 1
            thread = threading.Thread(target=self.talk, args=(conn,), daemon=True)
            thread.start()
            self.threads.append(thread)

    def talk(self, conn: socket.socket) -> None:
        try:
            self.converse(conn)
        finally:
            conn.close()
            self.closed.release()

    def converse(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            data = b""
            while not self.stop.is_set():
                while b"\r\n\r\n" not in data:
                    try:
                        piece = conn.recv(65536)
                    except OSError:
                        return
                    if not piece:
                        return
                    data += piece
                head, _, data = data.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                while len(data) < length:
                    data += conn.recv(65536)
                data = data[length:]
                self.requests += 1
                out = self.answer(self.requests)
                if out is None:
                    self.stop.wait()  # say nothing until the test ends
                    return
                conn.sendall(out)
                if self.close_after:
                    return


@contextmanager
def raw_server(answer: Answer, close_after: bool = False) -> Iterator[RawServer]:
    server = RawServer(answer, close_after)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.stop.set()
        thread.join(timeout=5)
        server.sock.close()


def ok(body: bytes, *extra: bytes) -> bytes:
    head = [b"HTTP/1.1 200 OK", b"Content-Length: %d" % len(body), *extra]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


BODY = bytes(range(256)) * 4099  # over 1 MiB, not a multiple of any read size


async def send(http: Http, url: str) -> httpx.Response:
    return await http.send(httpx.Request("POST", url, json={"prompt": "a cat"}), "test")


async def test_a_sized_body_arrives_whole_and_the_connection_is_kept() -> None:
    http = Http(timeout=DEFAULT_TIMEOUT, max_response_bytes=len(BODY))
    try:
        with raw_server(lambda n: ok(BODY)) as server:
            for _ in range(3):
                assert (await send(http, server.url)).content == BODY
            assert server.connections == 1
            assert isinstance(http._connections.clients[0], Connection)
    finally:
        await http.aclose()


async def test_a_chunked_body_arrives_whole_trailers_and_extensions_skipped() -> None:
    chunks = [BODY[:1], BODY[1:70_000], BODY[70_000:]]
    framed = b"".join(b"%x;name=value\r\n%s\r\n" % (len(c), c) for c in chunks)
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    answer = head + framed + b"0\r\nX-Trailer: yes\r\n\r\n"
    http = Http(timeout=DEFAULT_TIMEOUT, max_response_bytes=len(BODY))
    try:
        with raw_server(lambda n: answer) as server:
            for _ in range(2):
                assert (await send(http, server.url)).content == BODY
            assert server.connections == 1  # read to its end, so kept
    finally:
        await http.aclose()


async def test_a_body_ended_by_the_close_is_read_whole_and_not_reused() -> None:
    http = Http(timeout=DEFAULT_TIMEOUT, max_response_bytes=len(BODY))
    try:
        with raw_server(lambda n: b"HTTP/1.1 200 OK\r\n\r\n" + BODY, close_after=True) as server:
            for _ in range(2):
                assert (await send(http, server.url)).content == BODY
            assert server.connections == 2
    finally:
        await http.aclose()


async def test_a_connection_the_server_closed_while_idle_is_not_reused() -> None:
    """The server closes after each answer without saying so: the next request opens a
    new connection instead of failing on the dead one."""
    http = Http(timeout=DEFAULT_TIMEOUT, max_response_bytes=1024)
    try:
        with raw_server(lambda n: ok(b"fine"), close_after=True) as server:
            for _ in range(3):
                assert (await send(http, server.url)).content == b"fine"
                # The close has reached this side before the next request: otherwise
                # no client can tell (a request racing a server's close can fail).
                assert server.closed.acquire(timeout=5)
            assert server.connections == 3
    finally:
        await http.aclose()


async def test_connection_close_and_http_1_0_answers_are_not_reused() -> None:
    answers = [ok(b"a", b"Connection: close"), b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nb"]
    http = Http(timeout=DEFAULT_TIMEOUT, max_response_bytes=1024)
    try:
        with raw_server(lambda n: answers[(n - 1) % 2]) as server:
            assert (await send(http, server.url)).content == b"a"
            assert (await send(http, server.url)).content == b"b"
            assert server.connections == 2
    finally:
        await http.aclose()


async def test_informational_answers_are_skipped_and_204_has_no_body() -> None:
    answers = [b"HTTP/1.1 100 Continue\r\n\r\n" + ok(b"after"), b"HTTP/1.1 204 No Content\r\n\r\n"]
    http = Http(timeout=DEFAULT_TIMEOUT, max_response_bytes=1024)
    try:
        with raw_server(lambda n: answers[(n - 1) % 2]) as server:
            assert (await send(http, server.url)).content == b"after"
            response = await send(http, server.url)
            assert (response.status_code, response.content) == (204, b"")
            assert (await send(http, server.url)).content == b"after"
            assert server.connections == 1
    finally:
        await http.aclose()


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nonly this",  # cut short
        b"HTP/1.1 200 OK\r\n\r\n",  # not HTTP
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nabcdef",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\nbroken header\r\n\r\n",
        b"",  # closed without an answer
    ],
)
async def test_a_broken_answer_is_a_transport_error(answer: bytes) -> None:
    http = Http(timeout=DEFAULT_TIMEOUT, max_response_bytes=1024)
    try:
        with raw_server(lambda n: answer, close_after=True) as server:
            with pytest.raises(TransportError, match="the connection to test"):
                await send(http, server.url)
            # The connection was dropped, not kept: the next request works.
            server.answer = lambda n: ok(b"fine")
            assert (await send(http, server.url)).content == b"fine"
    finally:
        await http.aclose()


async def test_a_server_that_never_answers_times_out_as_a_request_timeout() -> None:
    http = Http(timeout=httpx.Timeout(5.0, read=0.2), max_response_bytes=1024)
    try:
        with raw_server(lambda n: None) as server:
            with pytest.raises(RequestTimeout, match="did not answer in time") as caught:
                await send(http, server.url)
            assert caught.value.request_sent
    finally:
        await http.aclose()


async def test_a_refused_connection_is_a_transport_error_not_sent() -> None:
    sock = socket.create_server(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    sock.close()  # nothing listens there now
    http = Http(timeout=DEFAULT_TIMEOUT, max_response_bytes=1024)
    try:
        with pytest.raises(TransportError) as caught:
            await send(http, url)
        assert not caught.value.request_sent
    finally:
        await http.aclose()


async def test_https_goes_through_the_lean_connection(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests._server import serve
    from tests._tls import throwaway_certificate

    ca, cert, key = throwaway_certificate(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(ca))  # what httpx's TLS context trusts

    async def app(scope: dict[str, Any], receive: Any, send_: Any) -> None:
        await send_({"type": "http.response.start", "status": 200, "headers": []})
        await send_({"type": "http.response.body", "body": BODY})

    http = Http(timeout=DEFAULT_TIMEOUT, max_response_bytes=len(BODY))
    try:
        with serve(app, tls=(cert, key), lifespan="off") as url:
            assert url.startswith("https://")
            for _ in range(2):
                assert (await send(http, url)).content == BODY
            (connection,) = http._connections.clients
            assert isinstance(connection, Connection)
            assert connection.fallback is None
            await http.aclose()  # before the server stops: it waits for open connections
    finally:
        await http.aclose()


async def test_https_to_an_untrusted_certificate_is_refused(tmp_path: Path) -> None:
    from tests._server import serve
    from tests._tls import throwaway_certificate

    _, cert, key = throwaway_certificate(tmp_path)

    async def app(scope: dict[str, Any], receive: Any, send_: Any) -> None:
        raise AssertionError("no request may arrive")

    http = Http(timeout=DEFAULT_TIMEOUT, max_response_bytes=1024)
    try:
        with (
            serve(app, tls=(cert, key), lifespan="off") as url,
            pytest.raises(TransportError, match="CERTIFICATE_VERIFY_FAILED"),
        ):
            await send(http, url)
    finally:
        await http.aclose()
