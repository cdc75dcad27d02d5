"""Baseten test fixtures: the key and model, a request, canned answers and how to parse them."""

from __future__ import annotations

import base64
import io
import json
from typing import Any

import httpx
from PIL import Image

from flux_sdk import Baseten, GeneratedImage, GenerateRequest

KEY = "bt_SeCrEt.9e8d7c6b5a4f3e2d1c"
MODEL_ID = "abcd1234"
URL = "https://model-abcd1234.api.baseten.co/production/predict"
JSON_TYPE = "application/json"


def _image(fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (40, 200, 40)).save(buf, format=fmt)
    return buf.getvalue()


PNG, JPEG, WEBP = _image("PNG"), _image("JPEG"), _image("WEBP")
REQ = GenerateRequest(prompt="red velvet cake", seed=42)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


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


def parse(resp: httpx.Response) -> GeneratedImage:
    return Baseten(KEY, MODEL_ID).parse_response(REQ, resp)


def build(request: GenerateRequest = REQ, **kwargs: Any) -> httpx.Request:
    return Baseten(KEY, MODEL_ID, **kwargs).build_request(request)
