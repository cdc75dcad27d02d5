"""The Cloudflare Workers AI route, ``POST /client/v4/accounts/{id}/ai/run/{model}``.

FLUX.1 [schnell]'s schema there: ``prompt`` (1 to 2048 characters) and ``steps`` (at
most 8), no other property. Answers and failures come in the v4 envelope with Workers
AI's error codes: 10000 for a wrong token, 5007 for an unknown model, 5006 for an input
the schema refuses, 3040 (429) when out of capacity, and 3036 (429) once the account's
daily allocation is spent (``EmulatorApp(cloudflare_daily_images=N)``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping

from flux_sdk.emulator._asgi import Scope, Send, cloudflare_error, send_bytes, send_json
from flux_sdk.emulator._faults import (
    BAD_BASE64,
    PNG_BASE64_START,
    Canned,
    Fault,
    FaultPlan,
    retry_after,
)
from flux_sdk.emulator._host import Settings
from flux_sdk.emulator._image import render_png
from flux_sdk.emulator._request import (
    Reject,
    header,
    int_field,
    json_object,
    key_matches,
    with_base64,
)

MODEL = "@cf/black-forest-labs/flux-1-schnell"
# The path arrives percent-decoded, so `@cf%2Fblack-forest-labs%2F...` lands here too.
PATH = re.compile(r"/client/v4/accounts/[A-Za-z0-9_-]+/ai/run/(.+)")
QUOTA_MESSAGE = (
    "you have used up your daily free allocation of 10,000 neurons, please upgrade to "
    "Cloudflare's Workers Paid plan if you would like to continue usage."
)
_ENVELOPE = b'{"result": {"image": "%s"}, "success": true, "errors": [], "messages": []}'
_PROPERTIES = frozenset({"prompt", "steps"})
# 3040 is Workers AI's own; the 5xx codes are the emulator's.
_ERRORS = {
    Fault.RATE_LIMIT: (429, 3040, "Capacity temporarily exceeded, please try again."),
    Fault.SERVER_ERROR: (500, 3000, "Internal server error"),
    Fault.BAD_GATEWAY: (502, 3000, "Bad gateway"),
    Fault.UNAVAILABLE: (503, 3000, "Service temporarily unavailable"),
}


class CloudflareWorkersAI:
    """Workers AI's ``ai/run`` for FLUX.1 [schnell]: Bearer token, the v4 envelope."""

    name = "cloudflare"

    def matches(self, path: str) -> bool:
        return PATH.fullmatch(path) is not None

    def response_headers(self, request_id: str) -> dict[str, str]:
        return {"cf-ray": f"{request_id}-EMU"}

    async def answer(
        self,
        settings: Settings,
        scope: Scope,
        body: bytes,
        headers: Mapping[str, str],
        send: Send,
    ) -> None:
        if not key_matches(header(scope, b"authorization"), settings.api_key, ("bearer",)):
            raise Reject(401, "Authentication error", code=10000)
        found = PATH.fullmatch(scope["path"])
        model = found.group(1) if found else ""
        if model != MODEL:
            raise Reject(400, f"No such model {model} or task", code=5007)
        data = json_object(body)
        extra = sorted(set(data) - _PROPERTIES)
        if extra:
            raise Reject(400, f"AiError: Bad input: additionalProperties '{extra[0]}' not allowed")
        prompt = data.get("prompt")
        if not isinstance(prompt, str) or not 1 <= len(prompt) <= 2048:
            raise Reject(
                400, "AiError: Bad input: 'prompt' must be a string of 1 to 2048 characters"
            )
        steps = int_field(data, "steps", 4, 1, 8, status=400)
        limit = settings.cloudflare_daily_images
        if limit is not None:
            if settings.cloudflare_images_served >= limit:
                raise Reject(429, QUOTA_MESSAGE, code=3036)
            settings.cloudflare_images_served += 1
        size = settings.default_size  # the model takes no size
        png = render_png(
            prompt,
            seed=None,
            steps=steps,
            width=size,
            height=size,
            target_bytes=settings.image_bytes,
        )
        await send_bytes(send, 200, with_base64(_ENVELOPE, png), "application/json", headers)

    async def refuse(self, send: Send, reject: Reject, headers: Mapping[str, str]) -> None:
        await send_json(send, reject.status, cloudflare_error(reject.code, reject.message), headers)

    def fault(self, fault: Fault, plan: FaultPlan) -> Canned | None:
        extra = retry_after(fault, plan)
        if fault in _ERRORS:
            status, code, message = _ERRORS[fault]
            return (
                status,
                json.dumps(cloudflare_error(code, message)).encode(),
                "application/json",
                extra,
            )
        if fault is Fault.INVALID_JSON:
            return (
                200,
                ('{"result": {"image": "' + PNG_BASE64_START).encode(),
                "application/json",
                extra,
            )
        if fault is Fault.INVALID_BASE64:
            body = {"result": {"image": BAD_BASE64}, "success": True, "errors": [], "messages": []}
            return 200, json.dumps(body).encode(), "application/json", extra
        return None
