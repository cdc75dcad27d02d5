"""The Together route: Together's own images shape, under ``/together``.

Together's real path, ``/v1/images/generations``, is the OpenAI-style route's on this
one origin, so Together answers on ``POST /together/v1/images/generations``: the path
Hugging Face's router gives Together's API. Point the provider at
``{emulator}/together/v1``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from flux_sdk.emulator._asgi import Scope, Send, send_bytes, send_json
from flux_sdk.emulator._faults import BAD_BASE64, PNG_BASE64_START, Canned, Fault, FaultPlan
from flux_sdk.emulator._faults import seconds as format_seconds
from flux_sdk.emulator._host import Settings
from flux_sdk.emulator._image import render_png
from flux_sdk.emulator._openai import error_body
from flux_sdk.emulator._request import (
    SEED_MAX,
    Reject,
    header,
    int_field,
    json_object,
    key_matches,
    with_base64,
)

PATH = "/together/v1/images/generations"
# Together's spec: steps default to 20 (not schnell's 4), n is 1 to 4, sides multiples of 8.
DEFAULT_STEPS = 20
MAX_STEPS = 50
MAX_IMAGES = 4
# The emulator counts nothing: every normal answer reports the same budget.
RATE_LIMIT = 60
# The messages are the emulator's own, with the error types Together documents.
_ERRORS = {
    Fault.RATE_LIMIT: (429, "You are over your request rate limit", "dynamic_request_limited"),
    Fault.SERVER_ERROR: (500, "The server had an error processing your request", "server_error"),
    Fault.BAD_GATEWAY: (502, "Bad gateway", "server_error"),
    Fault.UNAVAILABLE: (503, "The service is at capacity; try again shortly", "server_error"),
}


class Together:
    """Together's ``ImageResponse``: ``{"id", "model", "object": "list", "data": [{"index",
    "type": "b64_json", "b64_json"}]}``, OpenAI-style errors, ``x-ratelimit-*`` headers.

    ``response_format`` is ``"base64"`` (``"b64_json"`` is refused, as Together does) or
    ``"url"`` (answered with a ``data:`` URL). Images are PNG whatever ``output_format``
    says. Image ``k`` of ``n`` uses seed ``seed + k`` (no seed: None, then ``k``). A 429
    carries no ``Retry-After``: its wait is in ``x-ratelimit-reset``, as Together sends it.
    """

    name = "together"

    def matches(self, path: str) -> bool:
        return path == PATH

    def response_headers(self, request_id: str) -> dict[str, str]:
        return {
            "x-ratelimit-limit": str(RATE_LIMIT),
            "x-ratelimit-remaining": str(RATE_LIMIT - 1),
            "x-ratelimit-reset": "1",
        }

    async def answer(
        self,
        settings: Settings,
        scope: Scope,
        body: bytes,
        headers: Mapping[str, str],
        send: Send,
    ) -> None:
        if not key_matches(header(scope, b"authorization"), settings.api_key, ("bearer",)):
            raise Reject(401, "Invalid API key provided")
        content = _images(settings, json_object(body), headers.get("x-request-id", ""))
        await send_bytes(send, 200, content, "application/json", headers)

    async def refuse(self, send: Send, reject: Reject, headers: Mapping[str, str]) -> None:
        if reject.status == 401:
            error = error_body(reject.message, code="invalid_api_key")
        elif reject.status >= 500:
            error = error_body(reject.message, kind="server_error")
        else:
            error = error_body(reject.message, param=reject.param)
        await send_json(send, reject.status, error, headers)

    def fault(self, fault: Fault, plan: FaultPlan) -> Canned | None:
        if fault in _ERRORS:
            status, message, kind = _ERRORS[fault]
            extra = {}
            if fault is Fault.RATE_LIMIT:
                extra = {
                    "x-ratelimit-remaining": "0",
                    "x-ratelimit-reset": format_seconds(plan.retry_after),
                }
            error = error_body(message, kind=kind)
            return status, json.dumps(error).encode(), "application/json", extra
        if fault is Fault.INVALID_JSON:  # cut off after the start of the image
            cut = '{"id": "x", "object": "list", "data": [{"index": 0, "b64_json": "'
            return 200, (cut + PNG_BASE64_START).encode(), "application/json", {}
        if fault is Fault.INVALID_BASE64:
            item = {"index": 0, "type": "b64_json", "b64_json": BAD_BASE64}
            obj = {"id": "x", "model": "", "object": "list", "data": [item]}
            return 200, json.dumps(obj).encode(), "application/json", {}
        return None


def _images(settings: Settings, request: Mapping[str, Any], request_id: str) -> bytes:
    model = request.get("model")
    if not isinstance(model, str) or not model:
        raise Reject(400, "'model' is required and must be a string", param="model")
    prompt = request.get("prompt")
    if not isinstance(prompt, str) or not prompt:
        raise Reject(400, "'prompt' is required and must be a non-empty string", param="prompt")
    steps = int_field(request, "steps", DEFAULT_STEPS, 1, MAX_STEPS, status=400)
    n = int_field(request, "n", 1, 1, MAX_IMAGES, status=400)
    seed = int_field(request, "seed", None, 0, SEED_MAX, status=400)
    side = settings.default_size
    width = int_field(request, "width", side, 64, 2048, multiple=8, status=400)
    height = int_field(request, "height", side, 64, 2048, multiple=8, status=400)
    response_format = request.get("response_format", "url")
    if response_format not in ("base64", "url"):
        raise Reject(
            400,
            f"'response_format' must be 'base64' or 'url', got {response_format!r}",
            param="response_format",
        )
    output_format = request.get("output_format", "jpeg")
    if output_format not in ("jpeg", "png"):
        raise Reject(
            400,
            f"'output_format' must be 'jpeg' or 'png', got {output_format!r}",
            param="output_format",
        )
    if response_format == "base64":
        template = b'{"index": %d, "type": "b64_json", "b64_json": "%%s"}'
    else:
        template = b'{"index": %d, "type": "url", "url": "data:image/png;base64,%%s"}'
    items = []
    for k in range(n):
        png = render_png(
            prompt,
            seed=seed + k if seed is not None else (k or None),
            steps=steps,
            width=width,
            height=height,
            target_bytes=settings.image_bytes,
        )
        items.append(with_base64(template % k, png))
    head = json.dumps({"id": request_id, "model": model, "object": "list"})[:-1].encode()
    return b"".join((head, b', "data": [', b", ".join(items), b"]}"))
