"""The Baseten routes, ``POST /{environment or deployment}/predict``, as truss serves them.

Errors follow PROVIDERS.md, checked against Baseten's gateway and truss's own server:
no ``Authorization`` header is a plain-text 401, a key that is not accepted a 403 JSON
body, and an exception inside the model a generic 500 whose message never passes
through, marked by ``X-BASETEN-ERROR-SOURCE: 04`` and ``X-BASETEN-ERROR-CODE: 600``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from flux_sdk.emulator._asgi import Scope, Send, send_bytes, send_json
from flux_sdk.emulator._faults import BAD_BASE64, Fault
from flux_sdk.emulator._host import Settings
from flux_sdk.emulator._request import (
    SEED_MAX,
    SEED_MIN,
    Reject,
    header,
    int_field,
    json_object,
    key_matches,
    with_base64,
)
from flux_sdk.emulator._wire import Failure, FaultAnswers, OneShot, draw

PATH = re.compile(
    r"/(?:production|development|environments/[A-Za-z0-9_-]+|deployment/[A-Za-z0-9_-]+)/predict"
)
AUTH_ERROR = "please check the api-key you provided"
NO_AUTH_HEADER = "No Authorization header provided"
# truss answers a model's exception through starlette's JSONResponse: compact separators.
MODEL_ERROR_BODY = b'{"error":"Internal Server Error (in model/chainlet)."}'
MODEL_ERROR_HEADERS = {"x-baseten-error-source": "04", "x-baseten-error-code": "600"}
# PROVIDERS.md's meanings: 502 the model crashed or ran out of memory, 503 draining; a
# 500 is the model raising, truss's generic answer.
_FAULTS = FaultAnswers(
    {
        Fault.RATE_LIMIT: Failure(429, {"error": "Too many requests: rate limit exceeded"}),
        Fault.SERVER_ERROR: Failure(500, MODEL_ERROR_BODY, headers=MODEL_ERROR_HEADERS),
        Fault.BAD_GATEWAY: Failure(502, {"error": "The model crashed or ran out of memory"}),
        Fault.UNAVAILABLE: Failure(503, {"error": "The deployment is draining, please retry"}),
    },
    cut='{"data": "',
    broken={"data": BAD_BASE64},
)


class _ModelCrash(Reject):
    """An input the real model's ``predict`` raises on; the client sees a generic 500."""

    def __init__(self, reason: str) -> None:
        super().__init__(500, reason)  # the reason is for readers of this code only


class Baseten(OneShot):
    """A Baseten deployment of truss-examples' FLUX.1 [schnell] model."""

    name = "baseten"
    faults = _FAULTS

    def matches(self, path: str) -> bool:
        return PATH.fullmatch(path) is not None

    def response_headers(self, request_id: str) -> dict[str, str]:
        return {"x-baseten-request-id": request_id}

    def authorize(self, scope: Scope, settings: Settings) -> None:
        authorization = header(scope, b"authorization")
        if authorization is None or not authorization.strip():
            raise Reject(401, NO_AUTH_HEADER)
        if not key_matches(authorization, settings.api_key, ("api-key", "bearer")):
            raise Reject(403, AUTH_ERROR)

    def reply(
        self, settings: Settings, scope: Scope, body: bytes, headers: Mapping[str, str]
    ) -> tuple[bytes, str]:
        png = self._image(settings, json_object(body))
        # The real model answers JPEG; PNG is fine because clients must sniff the format.
        return with_base64(b'{"data": "%s"}', png), "application/json"

    def _image(self, settings: Settings, request: Mapping[str, object]) -> bytes:
        # The inputs PROVIDERS.md lists as crashing the real model come first: a 500.
        prompt = request.get("prompt")
        if not isinstance(prompt, str):
            raise _ModelCrash(f"prompt.split() on {type(prompt).__name__}")
        prompt2 = request.get("prompt2")
        if prompt2 is not None and not isinstance(prompt2, str):
            raise _ModelCrash("prompt2 is not a string")
        # Type-checked, then ignored: schnell forces guidance_scale to 0.0.
        guidance = request.get("guidance_scale", 0.0)
        if isinstance(guidance, bool) or not isinstance(guidance, (int, float, type(None))):
            raise _ModelCrash("guidance_scale is not a number")
        try:
            max_words = int_field(request, "max_sequence_length", 256, 1, 512)
        except Reject:
            raise _ModelCrash("diffusers refuses max_sequence_length") from None
        # The emulator's own bounds: the real model runs (slowly, or oddly) past them.
        # Seed 0 (like a missing seed) means "random" to the real model; the emulator stays
        # deterministic and treats 0 like any other seed.
        seed = int_field(request, "seed", None, SEED_MIN, SEED_MAX)
        steps = int_field(request, "num_inference_steps", 4, 1, 50)
        size = settings.default_size
        width = int_field(request, "width", size, 64, 2048, multiple=16)
        height = int_field(request, "height", size, 64, 2048, multiple=16)
        # The model truncates the prompt to max_sequence_length whitespace-separated words.
        words = prompt.split()
        if len(words) > max_words:
            prompt = " ".join(words[:max_words])
        if prompt2 is not None:
            prompt = f"{prompt}\x00{prompt2}"
        return draw(settings, prompt, seed, steps, width, height)

    async def refuse(self, send: Send, reject: Reject, headers: Mapping[str, str]) -> None:
        if reject.status == 401:  # from Baseten's gateway, before any JSON is involved
            body = reject.message.encode()
            await send_bytes(send, 401, body, "text/plain; charset=utf-8", headers)
        elif isinstance(reject, _ModelCrash):
            await send_bytes(
                send, 500, MODEL_ERROR_BODY, "application/json", {**headers, **MODEL_ERROR_HEADERS}
            )
        else:
            await send_json(send, reject.status, {"error": reject.message}, headers)
