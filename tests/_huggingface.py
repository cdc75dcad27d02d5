"""Shared by the HuggingFace tests: the token, the router, and a flow driven by hand.

Flows are driven by hand (each Step answered with a canned response), so these tests
are pure; tests/test_huggingface_emulator.py runs whole calls over loopback.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import httpx
import pytest

from flux_sdk import (
    FluxError,
    GeneratedImage,
    GenerateRequest,
    HuggingFace,
)
from flux_sdk.providers import Accepted, Ended, Step, Wait

from ._images import image_bytes

TOKEN = "hf_SeCrEtToKeN0123456789abcdefABCDEF"
ROUTER = "https://router.huggingface.co"
PNG = image_bytes(size=4)
REQ = GenerateRequest(prompt="a red fox", seed=42)
SCHNELL = "black-forest-labs/FLUX.1-schnell"
Item = Step | Wait | Accepted | Ended


def drive(
    provider: HuggingFace, answers: Iterable[httpx.Response], request: GenerateRequest = REQ
) -> tuple[GeneratedImage, list[Item]]:
    """Run the flow, answering each Step with the next response."""
    flow = provider.generate_flow(request)
    answers = iter(answers)
    seen: list[Item] = []
    value: Any = None
    try:
        while True:
            item = flow.send(value)
            seen.append(item)
            value = None
            if isinstance(item, Step):
                response = next(answers)
                response.request = item.request
                value = item.parse(response)
    except StopIteration as done:
        return done.value, seen


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
