"""Fault injection, checked with plain httpx: what a client sees when the emulator misbehaves."""

from __future__ import annotations

import base64
import binascii
import json
import logging
import math
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import anyio
import httpx
import pybase64
import pytest

from flux_sdk.emulator import (
    ALL_FAULTS,
    DEFAULT_API_KEY,
    EmulatorApp,
    Fault,
    FaultPlan,
    InjectedDisconnect,
)
from flux_sdk.emulator._asgi import Receive, Scope, Send
from flux_sdk.emulator._request import MAX_BODY_BYTES

from ._server import serve

pytestmark = pytest.mark.anyio

BASETEN = "/production/predict"
DATAOORTS = "/api/v1"
API_KEY = {"Authorization": f"Api-Key {DEFAULT_API_KEY}"}
BEARER = {"Authorization": f"Bearer {DEFAULT_API_KEY}"}
FOX = {"prompt": "a red fox"}
DATAOORTS_FOX = {"model": "black-forest-labs/flux-1-schnell", "data": FOX}
HTTP_ERRORS = {
    Fault.RATE_LIMIT: 429,
    Fault.SERVER_ERROR: 500,
    Fault.BAD_GATEWAY: 502,
    Fault.UNAVAILABLE: 503,
}
HTTP_LEVEL = [*HTTP_ERRORS, Fault.INVALID_JSON, Fault.INVALID_BASE64, Fault.HTML]


@dataclass(frozen=True)
class Call:
    """One provider's request, so a test can run against both."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    image_key: tuple[str, ...]


CALLS = {
    "baseten": Call(BASETEN, API_KEY, FOX, ("data",)),
    "dataoorts": Call(DATAOORTS, BEARER, DATAOORTS_FOX, ("result", "image_base64")),
}
BOTH = pytest.mark.parametrize("call", list(CALLS.values()), ids=list(CALLS))


def in_process(app: EmulatorApp, timeout: float = 5.0) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app)
    return httpx.AsyncClient(transport=transport, base_url="http://emulator", timeout=timeout)


async def post(http: httpx.AsyncClient, call: Call = CALLS["baseten"]) -> httpx.Response:
    return await http.post(call.path, headers=call.headers, json=call.body)


def image_field(response: httpx.Response, call: Call = CALLS["baseten"]) -> Any:
    value: Any = response.json()
    for key in call.image_key:
        value = value[key]
    return value


def is_normal(response: httpx.Response) -> bool:
    """A 200 whose JSON carries decodable base64: an answer a client can use."""
    try:
        base64.b64decode(image_field(response), validate=True)
    except (ValueError, KeyError, TypeError):
        return False
    return response.status_code == 200


async def read_into(received: bytearray, response: httpx.Response) -> None:
    """Keep every byte that arrives, so a test can count them after the read fails."""
    async for chunk in response.aiter_raw():
        received += chunk


async def normal_body(call: Call = CALLS["baseten"]) -> bytes:
    async with in_process(EmulatorApp(default_size=64)) as http:
        response = await post(http, call)
    assert response.status_code == 200
    return response.content


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


# HTTP-level faults


@BOTH
@pytest.mark.parametrize("fault", list(HTTP_ERRORS))
async def test_error_faults_answer_in_the_providers_error_shape(fault: Fault, call: Call) -> None:
    """429/500/502/503 come in each provider's own error body; only 429 has Retry-After."""
    async with in_process(EmulatorApp(faults=FaultPlan([fault]))) as http:
        response = await post(http, call)
    assert response.status_code == HTTP_ERRORS[fault]
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-request-id"] == "emu-000001"
    assert response.headers.get("retry-after") == ("1" if fault is Fault.RATE_LIMIT else None)
    body = response.json()
    if call.path == BASETEN:
        assert list(body) == ["error"]
        assert isinstance(body["error"], str)
        assert body["error"]
    else:
        assert (body["success"], body["messages"], body["result"]) == (False, [], None)
        [error] = body["errors"]
        assert isinstance(error["code"], int)
        assert isinstance(error["message"], str)
        if fault is Fault.RATE_LIMIT:
            assert error["code"] == 3040  # Workers AI's "out of capacity"


@pytest.mark.parametrize(("seconds", "header"), [(3, "3"), (120.0, "120"), (0.25, "0.25")])
async def test_retry_after_is_configurable_and_keeps_fractions(seconds: float, header: str) -> None:
    """Retry-After carries retry_after, whole seconds as integers, fractions for fast tests."""
    plan = FaultPlan([Fault.RATE_LIMIT], retry_after=seconds)
    async with in_process(EmulatorApp(faults=plan)) as http:
        response = await post(http)
    assert response.headers["retry-after"] == header


@BOTH
async def test_invalid_json_fault_is_json_typed_but_does_not_parse(call: Call) -> None:
    """INVALID_JSON is a 200 labelled application/json whose body is cut-off JSON."""
    async with in_process(EmulatorApp(faults=FaultPlan([Fault.INVALID_JSON]))) as http:
        response = await post(http, call)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.content.startswith(b'{"')
    with pytest.raises(json.JSONDecodeError):
        response.json()


@BOTH
async def test_invalid_base64_fault_keeps_the_shape_but_defeats_every_decoder(call: Call) -> None:
    """INVALID_BASE64 has the provider's JSON shape, but no decoder, lenient or not, accepts it."""
    async with in_process(EmulatorApp(faults=FaultPlan([Fault.INVALID_BASE64]))) as http:
        response = await post(http, call)
    assert response.status_code == 200
    value = image_field(response, call)
    assert isinstance(value, str)
    for validate in (False, True):
        with pytest.raises(binascii.Error):
            base64.b64decode(value, validate=validate)
        with pytest.raises(binascii.Error):
            pybase64.b64decode(value, validate=validate)


@BOTH
async def test_html_fault_is_a_proxy_error_page(call: Call) -> None:
    """HTML is a 200 text/html page, as a CDN or proxy in the way would send."""
    async with in_process(EmulatorApp(faults=FaultPlan([Fault.HTML]))) as http:
        response = await post(http, call)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.text.startswith("<!DOCTYPE html>")
    with pytest.raises(json.JSONDecodeError):
        response.json()


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


# Transport-level faults in process


@pytest.mark.parametrize("fault", [Fault.RESET, Fault.TRUNCATED])
async def test_in_process_drops_raise_injected_disconnect(fault: Fault) -> None:
    """With no socket to drop, RESET and TRUNCATED reach the caller as an OSError."""
    async with in_process(EmulatorApp(faults=FaultPlan([fault]))) as http:
        with pytest.raises(InjectedDisconnect) as caught:
            await post(http)
        assert is_normal(await post(http))
    assert isinstance(caught.value, OSError)
    assert caught.value.fault is fault


async def test_in_process_stall_ends_when_the_caller_gives_up() -> None:
    """In process no read timeout applies, but cancelling the call ends the stall at once."""
    async with in_process(EmulatorApp(faults=FaultPlan([Fault.STALL]))) as http:
        start = time.monotonic()
        with anyio.move_on_after(0.05) as scope:
            await post(http)
        assert scope.cancelled_caught
        assert time.monotonic() - start < 0.5
        assert is_normal(await post(http))


async def test_in_process_slow_returns_the_normal_body_once_it_has_all_dripped() -> None:
    """In process the transport buffers, so SLOW delays the whole normal body instead."""
    plan = FaultPlan([Fault.SLOW], slow_interval=0.02, slow_chunk=256)
    expected = await normal_body()
    start = time.monotonic()
    async with in_process(EmulatorApp(default_size=64, faults=plan)) as http:
        response = await post(http)
    assert time.monotonic() - start >= 0.02 * math.ceil(len(expected) / 256)
    assert response.content == expected


# The plan


async def test_script_is_used_in_order_then_requests_answer_normally() -> None:
    """Script entries apply one per request, None answering normally; counters follow."""
    plan = FaultPlan([Fault.RATE_LIMIT, None, Fault.HTML, None])
    async with in_process(EmulatorApp(default_size=64, faults=plan)) as http:
        responses = [await post(http) for _ in range(5)]
    assert [r.status_code for r in responses] == [429, 200, 200, 200, 200]
    assert [is_normal(r) for r in responses] == [False, True, False, True, True]
    assert plan.injected == Counter({Fault.RATE_LIMIT: 1, Fault.HTML: 1})
    assert plan.requests == 5


@BOTH
@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}])
async def test_a_request_without_a_fault_is_answered_as_without_a_plan(
    call: Call, headers: dict[str, str]
) -> None:
    """Drawing no fault changes nothing: successes and refusals are byte-for-byte the same."""
    plain = EmulatorApp(default_size=64)
    assert isinstance(plain.faults, FaultPlan)
    planned = EmulatorApp(default_size=64, faults=FaultPlan([None], rate=0.0))
    for auth in (call.headers, headers):
        answers = []
        for app in (plain, planned):
            async with in_process(app) as http:
                answers.append(await http.post(call.path, headers=auth, json=call.body))
        first, second = answers
        assert (first.status_code, first.headers.raw, first.content) == (
            second.status_code,
            second.headers.raw,
            second.content,
        )
    assert planned.faults.requests == 2
    assert not planned.faults.injected


async def test_faults_come_before_the_key_and_the_body_are_checked() -> None:
    """A real outage does not care whether the request was valid: the fault wins."""
    plan = FaultPlan([Fault.UNAVAILABLE, Fault.RATE_LIMIT])
    async with in_process(EmulatorApp(faults=plan)) as http:
        bad_key = await http.post(BASETEN, headers={"Authorization": "Api-Key no"}, json=FOX)
        bad_body = await http.post(BASETEN, headers=API_KEY, content=b"{not json")
    assert (bad_key.status_code, bad_body.status_code) == (503, 429)


async def test_requests_refused_before_the_body_is_read_are_never_faulted() -> None:
    """Unknown paths, wrong methods and oversized bodies are refused as usual, not counted."""
    plan = FaultPlan()
    plan.outage(Fault.SERVER_ERROR)
    async with in_process(EmulatorApp(faults=plan)) as http:
        missing = await http.post("/nowhere", headers=API_KEY, json=FOX)
        wrong_method = await http.get(BASETEN, headers=API_KEY)
        too_big = await http.post(BASETEN, headers=API_KEY, content=b" " * (MAX_BODY_BYTES + 1))
        assert (missing.status_code, wrong_method.status_code, too_big.status_code) == (
            404,
            405,
            413,
        )
        assert plan.requests == 0
        assert (await post(http)).status_code == 500
    assert (plan.requests, plan.injected) == (1, Counter({Fault.SERVER_ERROR: 1}))


async def test_rate_is_seeded_reproducible_and_close_to_the_requested_rate() -> None:
    """Over 400 requests, about 30% are faulty, in exactly the order a same-seed plan draws."""
    plan = FaultPlan(rate=0.3, kinds=HTTP_LEVEL, seed=7)
    async with in_process(EmulatorApp(default_size=64, faults=plan)) as http:
        faulty = [not is_normal(await post(http)) for _ in range(400)]
    twin = FaultPlan(rate=0.3, kinds=HTTP_LEVEL, seed=7)
    draws = [twin.draw() for _ in range(400)]
    assert faulty == [fault is not None for fault in draws]
    assert plan.injected == twin.injected
    assert set(plan.injected) == set(HTTP_LEVEL)  # every kind, chosen uniformly
    assert 90 <= sum(faulty) <= 150  # 120 expected; a 3.3-sigma band
    other = FaultPlan(rate=0.3, kinds=HTTP_LEVEL, seed=8)
    assert [other.draw() for _ in range(400)] != draws


async def test_outage_faults_every_request_until_cleared() -> None:
    """An outage overrides script and rate; clear ends it and drops the rest of the script."""
    plan = FaultPlan([Fault.HTML, Fault.HTML], kinds=[Fault.INVALID_JSON])
    app = EmulatorApp(default_size=64, faults=plan)
    async with in_process(app) as http:
        plan.outage(Fault.BAD_GATEWAY)
        during = [(await post(http)).status_code for _ in range(3)]
        plan.clear()
        after = await post(http)
        plan.rate = 1.0
        plan.outage(Fault.UNAVAILABLE)
        assert (await post(http)).status_code == 503
        plan.clear()  # the background rate is configuration: clear leaves it
        rated = await post(http)
    assert during == [502, 502, 502]
    assert is_normal(after)
    assert (rated.status_code, rated.content[:2]) == (200, b'{"')
    assert not is_normal(rated)  # INVALID_JSON, from the rate
    assert plan.injected == Counter(
        {Fault.BAD_GATEWAY: 3, Fault.UNAVAILABLE: 1, Fault.INVALID_JSON: 1}
    )


async def test_plans_are_rearmed_and_replaced_at_run_time() -> None:
    """extend queues more faults after a spent script, and app.faults can be swapped live."""
    app = EmulatorApp(default_size=64, faults=FaultPlan([Fault.RATE_LIMIT]))
    async with in_process(app) as http:
        statuses = [(await post(http)).status_code for _ in range(2)]
        app.faults.extend([None, Fault.SERVER_ERROR])
        statuses += [(await post(http)).status_code for _ in range(2)]
        app.faults = FaultPlan([Fault.UNAVAILABLE])
        statuses.append((await post(http)).status_code)
    assert statuses == [429, 200, 200, 500, 503]


@pytest.mark.parametrize(
    "settings",
    [
        {"rate": -0.1},
        {"rate": 1.5},
        {"rate": math.nan},
        {"kinds": []},
        {"kinds": ["teapot"]},
        {"script": ["teapot"]},
        {"retry_after": -1},
        {"stall_seconds": math.inf},
        {"slow_interval": math.nan},
        {"slow_chunk": 0},
    ],
)
async def test_plan_refuses_settings_that_make_no_sense(settings: dict[str, Any]) -> None:
    """A typo or an impossible number fails when the plan is made, not mid-run."""
    with pytest.raises(ValueError, match=r"rate|kinds|teapot|retry_after|stall|slow"):
        FaultPlan(**settings)


async def test_fault_values_are_the_short_names_a_cli_takes() -> None:
    """Each kind has a stable short name, and the names map back to the kinds."""
    assert [fault.value for fault in ALL_FAULTS] == [
        "429",
        "500",
        "502",
        "503",
        "reset",
        "truncated",
        "stall",
        "slow",
        "invalid_json",
        "invalid_base64",
        "html",
    ]
    assert Fault("503") is Fault.UNAVAILABLE
    assert FaultPlan([Fault("reset")]).draw() is Fault.RESET
