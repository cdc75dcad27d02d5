"""The emulator speaks Dataoorts' wire format; checked with plain httpx, not our client."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from flux_sdk.emulator import DEFAULT_API_KEY, EmulatorApp, render_png

from ._emulator import BEARER, DATAOORTS, MODEL, client, dataoorts_body, decode

pytestmark = pytest.mark.anyio


# Dataoorts


async def test_dataoorts_json_envelope_carries_a_base64_png() -> None:
    """A Dataoorts call answers the Workers AI envelope with the image in result.image_base64."""
    async with client(EmulatorApp()) as http:
        response = await http.post(DATAOORTS, headers=BEARER, json=dataoorts_body())
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-request-id"] == "emu-000001"
    body = response.json()
    assert (body["success"], body["errors"], body["messages"]) == (True, [], [])
    png = base64.b64decode(body["result"]["image_base64"], validate=True)
    assert decode(png).size == (1024, 1024)  # default_size, as the model has no size input
    assert png == render_png("a red fox", seed=None, steps=4, width=1024, height=1024)


async def test_dataoorts_raw_mode_returns_png_bytes() -> None:
    """In raw mode Dataoorts answers the image bytes themselves, typed image/png."""
    async with client(EmulatorApp(dataoorts_response="raw", default_size=80)) as http:
        response = await http.post(DATAOORTS, headers=BEARER, json=dataoorts_body(steps=8))
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert decode(response.content).size == (80, 80)
    assert response.content == render_png("a red fox", seed=None, steps=8, width=80, height=80)


async def test_dataoorts_seed_as_digit_string_equals_the_integer() -> None:
    """The seed document's quoted seed '12345' gives the same image as the integer 12345."""
    app = EmulatorApp(dataoorts_response="raw", default_size=64)
    async with client(app) as http:
        quoted = await http.post(DATAOORTS, headers=BEARER, json=dataoorts_body(seed="12345"))
        number = await http.post(DATAOORTS, headers=BEARER, json=dataoorts_body(seed=12345))
        other = await http.post(DATAOORTS, headers=BEARER, json=dataoorts_body(seed=12346))
    assert quoted.status_code == number.status_code == 200
    assert quoted.content == number.content != other.content


@pytest.mark.parametrize(
    "data",
    [{"prompt": "ab"}, {"prompt": "x" * 2048}, {"steps": 1}, {"steps": 8}, {"seed": 0}],
)
async def test_dataoorts_accepts_the_documented_limits(data: dict[str, Any]) -> None:
    """Values at the documented edges (prompt 2..2048 chars, steps 1..8) are accepted."""
    async with client() as http:
        response = await http.post(DATAOORTS, headers=BEARER, json=dataoorts_body(**data))
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-key"},
        {"Authorization": f"Api-Key {DEFAULT_API_KEY}"},
        {"Authorization": DEFAULT_API_KEY},
    ],
)
async def test_dataoorts_refuses_bad_auth_with_401_envelope(headers: dict[str, str]) -> None:
    """A missing or wrong key is a 401 in the Workers AI error envelope."""
    async with client() as http:
        response = await http.post(DATAOORTS, headers=headers, json=dataoorts_body())
    assert response.status_code == 401
    assert response.json() == {
        "success": False,
        "errors": [{"code": 10000, "message": "Authentication error"}],
        "messages": [],
        "result": None,
    }


async def test_dataoorts_custom_api_key() -> None:
    """The key is configurable, and the default key stops working when it is changed."""
    async with client(EmulatorApp(api_key="s3cret", default_size=64)) as http:
        good = await http.post(
            DATAOORTS, headers={"Authorization": "Bearer s3cret"}, json=dataoorts_body()
        )
        old = await http.post(DATAOORTS, headers=BEARER, json=dataoorts_body())
    assert (good.status_code, old.status_code) == (200, 401)


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"[1, 2]",
        json.dumps({"data": {"prompt": "a red fox"}}).encode(),
        json.dumps({"model": MODEL}).encode(),
        json.dumps({"model": "black-forest-labs/flux-1-dev", "data": {"prompt": "ab"}}).encode(),
        json.dumps({"model": MODEL, "data": "a red fox"}).encode(),
        json.dumps({"model": MODEL, "data": {}}).encode(),
        json.dumps(dataoorts_body(prompt=42)).encode(),
        json.dumps(dataoorts_body(prompt="a")).encode(),
        json.dumps(dataoorts_body(prompt="x" * 2049)).encode(),
        json.dumps(dataoorts_body(steps=0)).encode(),
        json.dumps(dataoorts_body(steps=9)).encode(),
        json.dumps(dataoorts_body(steps=True)).encode(),
        json.dumps(dataoorts_body(steps="4")).encode(),
        json.dumps(dataoorts_body(steps=4.0)).encode(),
        json.dumps(dataoorts_body(seed=1.5)).encode(),
        json.dumps(dataoorts_body(seed="12a")).encode(),
        json.dumps(dataoorts_body(seed=True)).encode(),
        json.dumps(dataoorts_body(seed=-1)).encode(),
    ],
)
async def test_dataoorts_refuses_invalid_input_with_400_envelope(body: bytes) -> None:
    """Malformed bodies and out-of-range inputs are a 400 with a readable error message."""
    async with client() as http:
        response = await http.post(
            DATAOORTS, headers={**BEARER, "Content-Type": "application/json"}, content=body
        )
    assert response.status_code == 400
    payload = response.json()
    assert (payload["success"], payload["messages"], payload["result"]) == (False, [], None)
    [error] = payload["errors"]
    assert isinstance(error["code"], int)
    assert isinstance(error["message"], str)
    assert len(error["message"]) > 10
