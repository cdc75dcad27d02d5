"""Shared by the emulator fault tests: both providers' calls, plain httpx clients and checks."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from flux_sdk.emulator import DEFAULT_API_KEY, EmulatorApp, Fault

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


async def normal_body(call: Call = CALLS["baseten"]) -> bytes:
    async with in_process(EmulatorApp(default_size=64)) as http:
        response = await post(http, call)
    assert response.status_code == 200
    return response.content
