"""What the provider tests build answers from, and how they look for a leaked key."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx

from flux_sdk import FluxError

JSON_TYPE = "application/json"


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


def leaks(text: str, secret: str, run: int = 8) -> bool:
    """Whether any ``run`` consecutive characters of ``secret`` appear in ``text``."""
    return any(secret[i : i + run] in text for i in range(len(secret) - run + 1))


def error_texts(exc: FluxError) -> list[str]:
    return [str(exc), repr(exc), str(getattr(exc, "body", ""))]
