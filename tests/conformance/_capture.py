"""One loopback server for both clients: flux_sdk's emulator, recording every request.

Each request is kept as the facets the suite compares (method, decoded path, query,
auth scheme, content type, JSON body as keys and value types), then handed to the
emulator, so the client that sent it also gets a real answer. ``serve_tls`` serves it
over HTTPS with a certificate made for the test (fal-client builds only https URLs).
"""

from __future__ import annotations

import json
import ssl
import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flux_sdk.emulator import EmulatorApp
from tests._server import serve as serve_app
from tests._tls import throwaway_certificate as throwaway_certificate  # re-exported


@dataclass(frozen=True)
class Seen:
    """One request, as the suite compares it."""

    method: str
    path: str
    query: dict[str, list[str]]
    auth_scheme: str | None
    content_type: str | None
    body: dict[str, Any] | None  # key -> type name (nested objects as dicts)

    def facets(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "auth_scheme": self.auth_scheme,
            "content_type": self.content_type,
            "body": self.body,
        }


def shape(value: Any) -> Any:
    """A JSON value's keys and value types: objects recurse, the rest are type names."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "number"
    return type(value).__name__


class Recorder:
    """An ASGI app: records each HTTP request, then lets ``app`` answer it."""

    def __init__(self, app: EmulatorApp) -> None:
        self.app = app
        self.seen: list[Seen] = []
        self._lock = threading.Lock()

    def take(self) -> list[Seen]:
        with self._lock:
            seen, self.seen = self.seen, []
        return seen

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        more = True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        self._record(scope, body)
        sent = False

        async def replay() -> dict[str, Any]:
            nonlocal sent
            if sent:
                message: dict[str, Any] = await receive()
                return message
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    def _record(self, scope: Any, body: bytes) -> None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        auth = headers.get("authorization")
        media = headers.get("content-type")
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = None
        query = urllib.parse.parse_qs(scope.get("query_string", b"").decode("latin-1"))
        seen = Seen(
            method=scope["method"],
            path=urllib.parse.unquote(scope["path"]),
            query=query,
            auth_scheme=auth.split()[0].lower() if auth else None,
            content_type=media.split(";")[0].strip().lower() if media else None,
            body=shape(parsed) if isinstance(parsed, dict) else None,
        )
        with self._lock:
            self.seen.append(seen)


@contextmanager
def serve(app: Any, tls: tuple[Path, Path] | None = None) -> Iterator[str]:
    """``app`` under uvicorn in a thread on a free loopback port; its base URL."""
    with serve_app(app, tls=tls, lifespan="off") as url:
        yield url


def trusting(ca: Path) -> ssl.SSLContext:
    """A client TLS context that trusts only the throwaway CA."""
    return ssl.create_default_context(cafile=str(ca))
