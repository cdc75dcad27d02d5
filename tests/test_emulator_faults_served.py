"""Emulator faults over a real uvicorn server: HTTP-level and transport-level faults."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import anyio
import httpx
import pytest

from flux_sdk.emulator import EmulatorApp, Fault, FaultPlan
from flux_sdk.emulator._asgi import Receive, Scope, Send

from ._emulator_faults import (
    API_KEY,
    BASETEN,
    FOX,
    HTTP_LEVEL,
    in_process,
    is_normal,
    normal_body,
    post,
)
from ._server import serve

pytestmark = pytest.mark.anyio


async def read_into(received: bytearray, response: httpx.Response) -> None:
    """Keep every byte that arrives, so a test can count them after the read fails."""
    async for chunk in response.aiter_raw():
        received += chunk


# A real server


class Recorder:
    """Wraps the app under the server and counts the HTTP handlers that have returned."""

    def __init__(self, app: EmulatorApp) -> None:
        self.app = app
        self.ended = 0
        self._changed = threading.Condition()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.app(scope, receive, send)
        finally:
            if scope["type"] == "http":
                with self._changed:
                    self.ended += 1
                    self._changed.notify_all()

    def wait_for(self, ended: int, timeout: float = 1.0) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: self.ended >= ended, timeout)


@dataclass(frozen=True)
class Server:
    url: str
    app: EmulatorApp
    recorder: Recorder

    def client(self, timeout: float | httpx.Timeout = 5.0) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, timeout=timeout)

    async def handlers_ended(self, count: int) -> bool:
        return await anyio.to_thread.run_sync(self.recorder.wait_for, count)


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    """One uvicorn server for the module; each test arms ``app.faults`` itself."""
    app = EmulatorApp(default_size=64)
    recorder = Recorder(app)
    with serve(recorder) as url:
        yield Server(url, app, recorder)


class ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.mark.parametrize("fault", HTTP_LEVEL)
async def test_http_level_faults_are_the_same_over_a_real_server(
    server: Server, fault: Fault
) -> None:
    """Over uvicorn an HTTP-level fault arrives as in process: status, type, headers, body."""
    async with in_process(EmulatorApp(faults=FaultPlan([fault]))) as http:
        expected = await post(http)
    server.app.faults = FaultPlan([fault])
    async with server.client() as http:
        response = await post(http)
    assert response.status_code == expected.status_code
    assert response.content == expected.content
    for name in ("content-type", "content-length", "retry-after"):
        assert response.headers.get(name) == expected.headers.get(name)


# Transport-level faults over a real server


async def test_reset_sends_the_headers_and_half_the_body_then_drops(server: Server) -> None:
    """RESET: the client reads a 200 and half its body, then gets RemoteProtocolError."""
    server.app.faults = FaultPlan([Fault.RESET])
    received = bytearray()
    async with server.client() as http:
        async with http.stream("POST", BASETEN, headers=API_KEY, json=FOX) as response:
            assert response.status_code == 200
            declared = int(response.headers["content-length"])
            with pytest.raises(httpx.RemoteProtocolError):
                await read_into(received, response)
        assert is_normal(await post(http))  # the server itself is unharmed
    assert declared == len(await normal_body())
    assert len(received) == declared // 2


async def test_truncated_declares_more_than_it_sends(server: Server) -> None:
    """TRUNCATED: the whole real body arrives, short of its content-length: a protocol error."""
    server.app.faults = FaultPlan([Fault.TRUNCATED, Fault.TRUNCATED])
    received = bytearray()
    async with server.client() as http:
        async with http.stream("POST", BASETEN, headers=API_KEY, json=FOX) as response:
            declared = int(response.headers["content-length"])
            with pytest.raises(httpx.RemoteProtocolError):
                await read_into(received, response)
        with pytest.raises(httpx.RemoteProtocolError):
            await post(http)  # without streaming: the same error, never a short body
    assert bytes(received) == await normal_body()
    assert declared == len(received) + 1024


async def test_injected_disconnects_stay_out_of_the_servers_error_log(server: Server) -> None:
    """A planned drop is not logged by uvicorn as an application crash with a traceback."""
    handler = ListHandler()
    logger = logging.getLogger("uvicorn.error")
    logger.addHandler(handler)
    try:
        server.app.faults = FaultPlan([Fault.RESET, Fault.TRUNCATED])
        async with server.client() as http:
            for _ in range(2):
                with pytest.raises(httpx.RemoteProtocolError):
                    await post(http)
        logger.error("still listening")  # the handler does see what uvicorn logs there
    finally:
        logger.removeHandler(handler)
    assert [record.getMessage() for record in handler.records] == ["still listening"]


async def test_stall_trips_a_read_timeout_and_ends_when_the_client_leaves(server: Server) -> None:
    """STALL: headers, then silence; a 0.2 s read timeout fires and the server lets go."""
    server.app.faults = FaultPlan([Fault.STALL], stall_seconds=30)
    ended = server.recorder.ended
    start = time.monotonic()
    async with server.client(httpx.Timeout(0.2)) as http:
        with pytest.raises(httpx.ReadTimeout):
            await post(http)
    assert time.monotonic() - start < 0.8
    assert await server.handlers_ended(ended + 1)  # noticed the disconnect, not 30 s later
    async with server.client() as http:
        assert is_normal(await post(http))


async def test_stall_does_not_block_the_servers_other_requests(server: Server) -> None:
    """While one request stalls, another on a new connection is answered at once."""
    plan = server.app.faults = FaultPlan([Fault.STALL], stall_seconds=30)
    ended = server.recorder.ended
    async with anyio.create_task_group() as group:

        async def stalled() -> None:
            async with server.client() as http:
                await post(http)

        group.start_soon(stalled)
        with anyio.fail_after(1):
            while plan.requests < 1:  # noqa: ASYNC110 - the plan offers a count, not an event
                await anyio.sleep(0.005)
            async with server.client() as http:
                assert is_normal(await post(http))
        group.cancel_scope.cancel()
    assert plan.injected == Counter({Fault.STALL: 1})
    assert await server.handlers_ended(ended + 2)


async def test_stall_that_runs_out_answers_normally_late(server: Server) -> None:
    """A stall shorter than the client's patience ends in the normal answer, just late."""
    server.app.faults = FaultPlan([Fault.STALL], stall_seconds=0.1)
    start = time.monotonic()
    async with server.client() as http:
        response = await post(http)
    assert time.monotonic() - start >= 0.1
    assert response.content == await normal_body()


async def test_slow_drips_the_normal_body_in_small_chunks(server: Server) -> None:
    """SLOW: the normal body arrives whole, in many chunks of at most slow_chunk bytes."""
    server.app.faults = FaultPlan([Fault.SLOW], slow_interval=0.005, slow_chunk=64)
    async with (
        server.client() as http,
        http.stream("POST", BASETEN, headers=API_KEY, json=FOX) as response,
    ):
        chunks = [chunk async for chunk in response.aiter_raw()]
    expected = await normal_body()
    assert b"".join(chunks) == expected
    # A busy machine may read late and find two drips merged: most must still be small.
    assert len(chunks) >= len(expected) // 64 // 2
    assert sorted(map(len, chunks))[len(chunks) // 2] <= 64


async def test_slow_trips_a_read_timeout_shorter_than_the_interval(server: Server) -> None:
    """A read timeout shorter than slow_interval fires, and the server stops dripping."""
    server.app.faults = FaultPlan([Fault.SLOW], slow_interval=0.5)
    ended = server.recorder.ended
    start = time.monotonic()
    async with server.client(httpx.Timeout(0.1)) as http:
        with pytest.raises(httpx.ReadTimeout):
            await post(http)
    assert time.monotonic() - start < 0.4
    assert await server.handlers_ended(ended + 1)
