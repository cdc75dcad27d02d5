"""Reading and checking a request: the body, headers, keys and fields every host shares."""

from __future__ import annotations

import base64
import hmac
import json
from collections.abc import Mapping
from typing import Any, TypeVar

from flux_sdk.emulator._asgi import Receive, Scope

_Default = TypeVar("_Default", int, None)

MAX_BODY_BYTES = 1024 * 1024
# torch.Generator.manual_seed accepts this range; the emulator keeps to it for every host.
SEED_MIN, SEED_MAX = -(2**63), 2**64 - 1


class Reject(Exception):
    """A request the service refuses: the status, the message and a Cloudflare error code.

    Each host turns it into its own error shape (``Host.refuse``).
    """

    def __init__(
        self, status: int, message: str, code: int = 5006, param: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param  # the offending field, for OpenAI-style errors


class Overloaded(Reject):
    """Every replica and queue place is taken: the app answers the host's own 429."""

    def __init__(self) -> None:
        super().__init__(429, "Too many requests: every replica is busy")


def int_field(
    obj: Mapping[str, Any],
    key: str,
    default: _Default,
    low: int,
    high: int,
    *,
    multiple: int = 1,
    status: int = 422,
) -> int | _Default:
    """Read an optional integer (``null`` means absent; a bool is not an integer)."""
    value = obj.get(key)
    if value is None:
        return default
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or not low <= value <= high
        or value % multiple
    ):
        rule = f"an integer from {low} to {high}" + (
            f", a multiple of {multiple}" if multiple > 1 else ""
        )
        raise Reject(status, f"'{key}' must be {rule}, got {value!r}", param=key)
    return value


def one_of(key: str, value: object, choices: tuple[str, ...]) -> str:
    """``value`` if it is one of ``choices``; else a 400 naming ``key`` (OpenAI-style hosts)."""
    if value not in choices:
        allowed = " or ".join(f"'{choice}'" for choice in choices)
        raise Reject(400, f"'{key}' must be {allowed}, got {value!r}", param=key)
    return str(value)


def with_base64(template: bytes, png: bytes) -> bytes:
    """``template`` with its one ``%s`` replaced by the base64 of ``png``."""
    # Base64 never needs JSON escaping; skipping json.dumps halves the cost of a 2 MB reply.
    before, after = template.split(b"%s")
    return b"".join((before, base64.b64encode(png), after))


def json_object(body: bytes) -> dict[str, Any]:
    try:
        parsed = json.loads(body)
    except ValueError:
        raise Reject(400, "the request body is not valid JSON") from None
    if not isinstance(parsed, dict):
        raise Reject(400, "the request body must be a JSON object")
    return parsed


def header(scope: Scope, name: bytes) -> str | None:
    """The first value of header ``name`` (lowercase), or None if the request has none."""
    for key, value in scope["headers"]:
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


def key_matches(authorization: str | None, api_key: str, schemes: tuple[str, ...]) -> bool:
    """Whether an ``Authorization`` value is ``SCHEME KEY`` with a scheme in ``schemes``."""
    scheme, _, key = (authorization or "").partition(" ")
    # compare_digest: a habit worth keeping even for a test server's fixed key.
    return scheme.lower() in schemes and hmac.compare_digest(key.strip().encode(), api_key.encode())


async def read_body(scope: Scope, receive: Receive) -> bytes | None:
    """The whole body, across every ``http.request`` message; None if the client left."""
    declared = header(scope, b"content-length") or ""
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise Reject(413, f"request body over {MAX_BODY_BYTES} bytes")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:  # a chunked body declares no length up front
            raise Reject(413, f"request body over {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)
