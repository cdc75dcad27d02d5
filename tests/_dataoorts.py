"""Dataoorts test fixtures: the key, a request, canned answers and how to parse them."""

from __future__ import annotations

import base64
import io
import json
from typing import Any

import httpx
import pytest
from PIL import Image

from flux_sdk import Dataoorts, FluxError, GeneratedImage, GenerateRequest

KEY = "dk_SeCrEt_7f3a9c1e5b2d4f60aa"
URL = "https://cloud.dataoorts.com/api/v1"
JSON_TYPE = "application/json"


def _image(fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 40, 40)).save(buf, format=fmt)
    return buf.getvalue()


PNG, JPEG, WEBP = _image("PNG"), _image("JPEG"), _image("WEBP")
REQ = GenerateRequest(prompt="a tiny astronaut", seed=7)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def envelope(image: bytes = PNG) -> dict[str, Any]:
    return {"errors": [], "messages": [], "result": {"image_base64": b64(image)}, "success": True}


def failure(*errors: tuple[int, str]) -> dict[str, Any]:
    return {
        "errors": [{"code": code, "message": message} for code, message in errors],
        "messages": [],
        "result": None,
        "success": False,
    }


def response(
    status: int = 200,
    body: Any = None,
    *,
    content_type: str | None = JSON_TYPE,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    if isinstance(body, (dict, list)):
        content = json.dumps(body).encode()
    elif isinstance(body, str):
        content = body.encode()
    else:
        content = body or b""
    all_headers = {"content-type": content_type} if content_type else {}
    all_headers.update(headers or {})
    return httpx.Response(status, headers=all_headers, content=content)


def parse(resp: httpx.Response, provider: Dataoorts | None = None) -> GeneratedImage:
    return (provider or Dataoorts(KEY)).parse_response(REQ, resp)


def error_of(resp: httpx.Response) -> FluxError:
    with pytest.raises(FluxError) as info:
        parse(resp)
    return info.value
