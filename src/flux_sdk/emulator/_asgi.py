"""ASGI plumbing shared by the emulator's normal answers and its injected faults."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def cloudflare_error(code: int, message: str) -> dict[str, Any]:
    """A failure in the Workers AI envelope, which Dataoorts' matches (PROVIDERS.md)."""
    return {
        "success": False,
        "errors": [{"code": code, "message": message}],
        "messages": [],
        "result": None,
    }


async def send_bytes(
    send: Send,
    status: int,
    body: bytes,
    content_type: str,
    headers: Mapping[str, str] | None = None,
) -> None:
    """A whole response in one body message, with its exact ``content-length``."""
    raw = [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())]
    raw += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


async def send_json(
    send: Send, status: int, obj: Any, headers: Mapping[str, str] | None = None
) -> None:
    await send_bytes(send, status, json.dumps(obj).encode(), "application/json", headers)
