"""Baseten test fixtures: the key and model, a request, canned answers and how to parse them."""

from __future__ import annotations

from typing import Any

import httpx

from flux_sdk import Baseten, GeneratedImage, GenerateRequest

from ._images import image_bytes

KEY = "bt_SeCrEt.9e8d7c6b5a4f3e2d1c"
MODEL_ID = "abcd1234"
URL = "https://model-abcd1234.api.baseten.co/production/predict"
PNG, JPEG, WEBP = (image_bytes(fmt, size=8, color=(40, 200, 40)) for fmt in ("PNG", "JPEG", "WEBP"))
REQ = GenerateRequest(prompt="red velvet cake", seed=42)


def parse(resp: httpx.Response) -> GeneratedImage:
    return Baseten(KEY, MODEL_ID).parse_response(REQ, resp)


def build(request: GenerateRequest = REQ, **kwargs: Any) -> httpx.Request:
    return Baseten(KEY, MODEL_ID, **kwargs).build_request(request)
