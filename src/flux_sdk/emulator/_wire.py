"""What the host modules share: the key check, image drawing, fault answers, OpenAI errors.

Each host module keeps what is its own (paths, field names, messages, error codes) and
hands it to these helpers, so the way a key is checked, an image is numbered or a fault
is canned is written once and cannot drift between hosts.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from flux_sdk.emulator._asgi import Scope, Send, cloudflare_error, send_bytes, send_json
from flux_sdk.emulator._faults import (
    BAD_BASE64,
    PNG_BASE64_START,
    Canned,
    Fault,
    FaultPlan,
    seconds,
)
from flux_sdk.emulator._host import Settings
from flux_sdk.emulator._image import render_png
from flux_sdk.emulator._request import Reject, header, key_matches, with_base64

BEARER = ("bearer",)


def check_key(
    scope: Scope,
    settings: Settings,
    message: str,
    *,
    schemes: tuple[str, ...] = BEARER,
    code: int = 5006,
) -> None:
    """Refuse with a 401 (``message``, Cloudflare ``code``) unless the request carries the
    app's key as ``Authorization: SCHEME KEY``."""
    if not key_matches(header(scope, b"authorization"), settings.api_key, schemes):
        raise Reject(401, message, code=code)


class OneShot:
    """A host that answers each request at once, in one body: no queue, no polls.

    A subclass names its ``paths`` (or its own ``matches``), the 401's ``auth_error``
    (and Workers AI ``auth_code``), its ``faults``, and a ``reply``: the checks of one
    request and its 200 body with that body's content type.
    """

    name: str
    paths: tuple[str, ...] = ()
    auth_error: str
    auth_code = 5006
    faults: FaultAnswers

    def matches(self, path: str) -> bool:
        return path in self.paths

    def response_headers(self, request_id: str) -> dict[str, str]:
        return {}

    def authorize(self, scope: Scope, settings: Settings) -> None:
        """Refuse a request without the app's ``Bearer`` key."""
        check_key(scope, settings, self.auth_error, code=self.auth_code)

    async def answer(
        self, settings: Settings, scope: Scope, body: bytes, headers: Mapping[str, str], send: Send
    ) -> None:
        self.authorize(scope, settings)
        content, content_type = self.reply(settings, scope, body, headers)
        await send_bytes(send, 200, content, content_type, headers)

    def reply(
        self, settings: Settings, scope: Scope, body: bytes, headers: Mapping[str, str]
    ) -> tuple[bytes, str]:
        """Check the request (raise ``Reject`` to refuse); the answer and its type."""
        raise NotImplementedError

    def fault(self, fault: Fault, plan: FaultPlan) -> Canned | None:
        return self.faults.answer(fault, plan)


class V4Host(OneShot):
    """A host in Workers AI's v4 envelope: Cloudflare's, and Dataoorts', which copies it."""

    auth_error = "Authentication error"
    auth_code = 10000

    async def refuse(self, send: Send, reject: Reject, headers: Mapping[str, str]) -> None:
        await send_json(send, reject.status, cloudflare_error(reject.code, reject.message), headers)


class OpenAIStyleHost(OneShot):
    """A host with OpenAI's error bodies (OpenAI-style servers, Together)."""

    async def refuse(self, send: Send, reject: Reject, headers: Mapping[str, str]) -> None:
        await send_json(send, reject.status, openai_refusal(reject), headers)


def draw(
    settings: Settings, prompt: str, seed: int | None, steps: int, width: int, height: int
) -> bytes:
    """The PNG for these inputs, padded to the app's ``image_bytes`` if it sets one."""
    return render_png(
        prompt,
        seed=seed,
        steps=steps,
        width=width,
        height=height,
        target_bytes=settings.image_bytes,
    )


def numbered(
    settings: Settings,
    templates: Sequence[bytes],
    prompt: str,
    seed: int | None,
    steps: int,
    size: tuple[int, int],
) -> list[bytes]:
    """One image per template, its base64 in the template's ``%s``; image ``k`` uses
    seed ``seed + k`` (no seed: None, then ``k``), as the OpenAI-style hosts number them."""
    images = []
    for k, template in enumerate(templates):
        png = draw(settings, prompt, seed + k if seed is not None else (k or None), steps, *size)
        images.append(with_base64(template, png))
    return images


class Failure(NamedTuple):
    """One canned error answer: its status, its body (JSON-able, or bytes as they are),
    its content type and any headers it adds."""

    status: int
    body: object
    content_type: str = "application/json"
    headers: Mapping[str, str] = {}


def _retry_after(plan: FaultPlan) -> dict[str, str]:
    return {"retry-after": seconds(plan.retry_after)}


@dataclass(frozen=True)
class FaultAnswers:
    """A host's whole answers for the HTTP-level faults, in its own shapes.

    ``cut`` is a normal answer's start up to the image's base64 (``INVALID_JSON`` sends it
    with the image's first bytes, cut off); ``broken`` is a normal answer whose image
    fails to decode (``INVALID_BASE64``). ``rate_limit`` gives a 429's headers
    (``Retry-After`` unless the host says its wait another way); other faults add none.
    """

    errors: Mapping[Fault, Failure]
    cut: str
    broken: object
    broken_type: str = "application/json"
    rate_limit: Callable[[FaultPlan], dict[str, str]] = _retry_after
    _bodies: dict[Fault, bytes] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        """Encode every body once: a fault costs a lookup, as a canned answer should."""
        bodies: dict[Fault, bytes] = {f: _encoded(e.body) for f, e in self.errors.items()}
        bodies[Fault.INVALID_JSON] = (self.cut + PNG_BASE64_START).encode()
        bodies[Fault.INVALID_BASE64] = _encoded(self.broken)
        object.__setattr__(self, "_bodies", bodies)

    def answer(self, fault: Fault, plan: FaultPlan) -> Canned | None:
        """The canned answer to ``fault``; None leaves it to ``inject``."""
        extra = self.rate_limit(plan) if fault is Fault.RATE_LIMIT else {}
        error = self.errors.get(fault)
        if error is not None:
            headers = {**extra, **error.headers}
            return error.status, self._bodies[fault], error.content_type, headers
        if fault is Fault.INVALID_JSON:
            return 200, self._bodies[fault], "application/json", extra
        if fault is Fault.INVALID_BASE64:
            return 200, self._bodies[fault], self.broken_type, extra
        return None


def _encoded(body: object) -> bytes:
    return body if isinstance(body, bytes) else json.dumps(body).encode()


def openai_error(
    message: str,
    *,
    kind: str = "invalid_request_error",
    param: str | None = None,
    code: str | None = None,
) -> dict[str, Any]:
    """OpenAI's error body: ``{"error": {"message", "type", "param", "code"}}``."""
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def openai_failures(
    errors: Mapping[Fault, tuple[int, str]],
    rate_limit_type: str,
    rate_limit_code: str | None = None,
) -> dict[Fault, Failure]:
    """Each fault's status and message as OpenAI-style error bodies: the 429 with the
    host's own error type (and code), the 5xx as ``server_error``."""
    return {
        fault: Failure(
            status,
            openai_error(message, kind=rate_limit_type, code=rate_limit_code)
            if fault is Fault.RATE_LIMIT
            else openai_error(message, kind="server_error"),
        )
        for fault, (status, message) in errors.items()
    }


def openai_refusal(reject: Reject) -> dict[str, Any]:
    """A refused request as OpenAI-style hosts say it: a bad key, a server fault, or the
    offending field."""
    if reject.status == 401:
        return openai_error(reject.message, code="invalid_api_key")
    if reject.status >= 500:
        return openai_error(reject.message, kind="server_error")
    return openai_error(reject.message, param=reject.param)


def v4_envelope(image_key: str, image: str = "%s") -> dict[str, Any]:
    """A Workers AI v4 success (Dataoorts' too) with ``image`` under ``result.image_key``."""
    return {"result": {image_key: image}, "success": True, "errors": [], "messages": []}


def v4_faults(image_key: str, rate_limited: str, bad_gateway: str = "Bad gateway") -> FaultAnswers:
    """Fault answers in the v4 envelope: Workers AI's own 3040 for a 429 (out of
    capacity), 3000 for the 5xx (the emulator's; only the 429 code is documented)."""
    errors = {
        Fault.RATE_LIMIT: (429, 3040, rate_limited),
        Fault.SERVER_ERROR: (500, 3000, "Internal server error"),
        Fault.BAD_GATEWAY: (502, 3000, bad_gateway),
        Fault.UNAVAILABLE: (503, 3000, "Service temporarily unavailable"),
    }
    return FaultAnswers(
        {
            fault: Failure(status, cloudflare_error(code, text))
            for fault, (status, code, text) in errors.items()
        },
        cut=f'{{"result": {{"{image_key}": "',
        broken=v4_envelope(image_key, BAD_BASE64),
    )
