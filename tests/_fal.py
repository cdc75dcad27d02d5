"""Shared by the fal tests: the key, the submit URL, a result and canned answers."""

from __future__ import annotations

from typing import Any

import httpx

from flux_sdk.providers import Step

from ._images import image_bytes

KEY = "fal_SeCrEt-5e6f:7a8b9c0d1e2f3a4b"
SUBMIT = "https://queue.fal.run/fal-ai/flux/schnell"
CDN = "https://v3.fal.media/files/rabbit/a1b2c3.png"
PNG = image_bytes(size=4)
RESULT = {
    "images": [{"url": CDN, "width": 1024, "height": 1024, "content_type": "image/png"}],
    "timings": {"inference": 0.3},
    "seed": 42,
    "has_nsfw_concepts": [False],
    "prompt": "a red fox",
}


def ok(body: Any = None, *, content: bytes | None = None, **headers: str) -> httpx.Response:
    if content is not None:
        return httpx.Response(200, content=content, headers=headers)
    return httpx.Response(200, json=body, headers=headers)


def steps(seen: list[Any]) -> list[tuple[str, str, str]]:
    return [(s.kind, s.request.method, str(s.request.url)) for s in seen if isinstance(s, Step)]
