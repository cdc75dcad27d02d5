"""Shared by the HuggingFace tests: the token, the router, and a flow driven by hand.

Flows are driven by hand (each Step answered with a canned response), so these tests
are pure; tests/test_huggingface_emulator.py runs whole calls over loopback.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from flux_sdk import FluxError, GenerateRequest, HuggingFace
from flux_sdk.providers import Step

from ._flows import REQ, drive
from ._images import image_bytes

TOKEN = "hf_SeCrEtToKeN0123456789abcdefABCDEF"
ROUTER = "https://router.huggingface.co"
PNG = image_bytes(size=4)
SCHNELL = "black-forest-labs/FLUX.1-schnell"


def first(request: GenerateRequest = REQ, **options: Any) -> httpx.Request:
    item = next(HuggingFace(TOKEN, **options).generate_flow(request))
    assert isinstance(item, Step)
    return item.request


def ok(body: Any = None, *, content: bytes | None = None, **headers: str) -> httpx.Response:
    if content is not None:
        return httpx.Response(200, content=content, headers=headers)
    return httpx.Response(200, json=body, headers=headers)


def error_of(provider: HuggingFace, response: httpx.Response) -> FluxError:
    with pytest.raises(FluxError) as info:
        drive(provider, [response])
    assert TOKEN not in str(info.value)
    assert TOKEN not in repr(info.value)
    return info.value


BEARER = f"Bearer {TOKEN}"
