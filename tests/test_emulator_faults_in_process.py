"""Emulator faults in process: HTTP-level error shapes and transport faults over ASGI."""

from __future__ import annotations

import base64
import binascii
import json
import math
import time

import anyio
import pybase64
import pytest

from flux_sdk.emulator import EmulatorApp, Fault, FaultPlan, InjectedDisconnect

from ._emulator_faults import (
    BASETEN,
    BOTH,
    HTTP_ERRORS,
    Call,
    image_field,
    in_process,
    is_normal,
    normal_body,
    post,
)

pytestmark = pytest.mark.anyio


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
