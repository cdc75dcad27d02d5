"""Dataoorts test fixtures: the key, a request, canned answers and how to parse them."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from flux_sdk import Dataoorts, FluxError, GeneratedImage, GenerateRequest

from ._images import image_bytes
from ._wire import b64

KEY = "dk_SeCrEt_7f3a9c1e5b2d4f60aa"
URL = "https://cloud.dataoorts.com/api/v1"
PNG, JPEG, WEBP = (image_bytes(fmt, size=8, color=(200, 40, 40)) for fmt in ("PNG", "JPEG", "WEBP"))
REQ = GenerateRequest(prompt="a tiny astronaut", seed=7)


def envelope(image: bytes = PNG) -> dict[str, Any]:
    return {"errors": [], "messages": [], "result": {"image_base64": b64(image)}, "success": True}


def failure(*errors: tuple[int, str]) -> dict[str, Any]:
    return {
        "errors": [{"code": code, "message": message} for code, message in errors],
        "messages": [],
        "result": None,
        "success": False,
    }


def parse(resp: httpx.Response, provider: Dataoorts | None = None) -> GeneratedImage:
    return (provider or Dataoorts(KEY)).parse_response(REQ, resp)


def error_of(resp: httpx.Response) -> FluxError:
    with pytest.raises(FluxError) as info:
        parse(resp)
    return info.value
