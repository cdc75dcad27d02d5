"""The Dataoorts route, ``POST /api/v1``: its body, its answers and its error envelope."""

from __future__ import annotations

import json
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
    SEED_MAX,
    Reject,
    header,
    int_field,
    json_object,
    key_matches,
    with_base64,
)

MODEL = "black-forest-labs/flux-1-schnell"
PATH = "/api/v1"
_ENVELOPE = b'{"result": {"image_base64": "%s"}, "success": true, "errors": [], "messages": []}'
# Workers AI documents codes for 429 only (3040: out of capacity); the 5xx codes are ours.
_ERRORS = {
    Fault.RATE_LIMIT: (429, 3040, "No more data centers to forward the request to"),
    Fault.SERVER_ERROR: (500, 3000, "Internal server error"),
    Fault.BAD_GATEWAY: (502, 3000, "Bad gateway: the inference server did not answer"),
    Fault.UNAVAILABLE: (503, 3000, "Service temporarily unavailable"),
}


class Dataoorts:
    """Dataoorts' FLUX.1 [schnell]: Bearer key, ``{"model", "data"}``, Workers-AI errors."""

    name = "dataoorts"

    def matches(self, path: str) -> bool:
        return path == PATH

    def response_headers(self, request_id: str) -> dict[str, str]:
        return {}

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
        request = json_object(body)
        if "model" not in request or "data" not in request:
            raise Reject(400, "Error: the body needs the properties 'model' and 'data'")
        if request["model"] != MODEL:
            raise Reject(400, f"No such model {request['model']!r}", code=5007)
        data = request["data"]
        if not isinstance(data, dict):
            raise Reject(400, "Error: Type mismatch of '/data', 'object' expected")
        prompt = data.get("prompt")
        if not isinstance(prompt, str) or not 2 <= len(prompt) <= 2048:
            raise Reject(
                400, "Error: oneOf at '/prompt' not met, need a string of 2 to 2048 characters"
            )
        steps = int_field(data, "steps", 4, 1, 8, status=400)
        seed = data.get("seed")
        if isinstance(seed, str) and seed.isascii() and seed.isdigit() and len(seed) <= 20:
            data = {**data, "seed": int(seed)}  # the seed document quotes it: '12345'
        seed = int_field(data, "seed", None, 0, SEED_MAX, status=400)
        size = settings.default_size  # this model takes no width or height
        png = render_png(
            prompt,
            seed=seed,
            steps=steps,
            width=size,
            height=size,
            target_bytes=settings.image_bytes,
        )
        if settings.dataoorts_response == "raw":
            await send_bytes(send, 200, png, "image/png", headers)
        else:
            await send_bytes(send, 200, with_base64(_ENVELOPE, png), "application/json", headers)

    async def refuse(self, send: Send, reject: Reject, headers: Mapping[str, str]) -> None:
        await send_json(send, reject.status, cloudflare_error(reject.code, reject.message), headers)

    def fault(self, fault: Fault, plan: FaultPlan) -> Canned | None:
        extra = retry_after(fault, plan)
        if fault in _ERRORS:
            status, code, message = _ERRORS[fault]
            body = json.dumps(cloudflare_error(code, message)).encode()
            return status, body, "application/json", extra
        if fault is Fault.INVALID_JSON:  # an answer cut off after the start of the image
            cut = '{"result": {"image_base64": "' + PNG_BASE64_START
            return 200, cut.encode(), "application/json", extra
        if fault is Fault.INVALID_BASE64:
            body = json.dumps(
                {
                    "result": {"image_base64": BAD_BASE64},
                    "success": True,
                    "errors": [],
                    "messages": [],
                }
            ).encode()
            return 200, body, "application/json", extra
        return None
