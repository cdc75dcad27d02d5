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

from flux_sdk.emulator._asgi import Scope
from flux_sdk.emulator._faults import BAD_BASE64, Fault, seconds
from flux_sdk.emulator._host import Settings
from flux_sdk.emulator._request import SEED_MAX, Reject, int_field, json_object, one_of
from flux_sdk.emulator._wire import (
    FaultAnswers,
    OpenAIStyleHost,
    numbered,
    openai_failures,
)

PATH = "/together/v1/images/generations"
# Together's spec: steps default to 20 (not schnell's 4), n is 1 to 4, sides multiples of 8.
DEFAULT_STEPS = 20
MAX_STEPS = 50
MAX_IMAGES = 4
# The emulator counts nothing: every normal answer reports the same budget.
RATE_LIMIT = 60
_FORMATS = ("base64", "url")
# The messages are the emulator's own, with the error types Together documents.
_FAULTS = FaultAnswers(
    openai_failures(
        {
            Fault.RATE_LIMIT: (429, "You are over your request rate limit"),
            Fault.SERVER_ERROR: (500, "The server had an error processing your request"),
            Fault.BAD_GATEWAY: (502, "Bad gateway"),
            Fault.UNAVAILABLE: (503, "The service is at capacity; try again shortly"),
        },
        rate_limit_type="dynamic_request_limited",
    ),
    cut='{"id": "x", "object": "list", "data": [{"index": 0, "b64_json": "',
    broken={
        "id": "x",
        "model": "",
        "object": "list",
        "data": [{"index": 0, "type": "b64_json", "b64_json": BAD_BASE64}],
    },
    rate_limit=lambda plan: {
        "x-ratelimit-remaining": "0",
        "x-ratelimit-reset": seconds(plan.retry_after),
    },
)


class Together(OpenAIStyleHost):
    """Together's ``ImageResponse``: ``{"id", "model", "object": "list", "data": [{"index",
    "type": "b64_json", "b64_json"}]}``, OpenAI-style errors, ``x-ratelimit-*`` headers.

    ``response_format`` is ``"base64"`` (``"b64_json"`` is refused, as Together does) or
    ``"url"`` (answered with a ``data:`` URL). Images are PNG whatever ``output_format``
    says. Image ``k`` of ``n`` uses seed ``seed + k`` (no seed: None, then ``k``). A 429
    carries no ``Retry-After``: its wait is in ``x-ratelimit-reset``, as Together sends it.
    """

    name = "together"
    paths = (PATH,)
    auth_error = "Invalid API key provided"
    faults = _FAULTS

    def response_headers(self, request_id: str) -> dict[str, str]:
        return {
            "x-ratelimit-limit": str(RATE_LIMIT),
            "x-ratelimit-remaining": str(RATE_LIMIT - 1),
            "x-ratelimit-reset": "1",
        }

    def reply(
        self, settings: Settings, scope: Scope, body: bytes, headers: Mapping[str, str]
    ) -> tuple[bytes, str]:
        request_id = headers.get("x-request-id", "")
        return _images(settings, json_object(body), request_id), "application/json"


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
    response_format = one_of("response_format", request.get("response_format", "url"), _FORMATS)
    one_of("output_format", request.get("output_format", "jpeg"), ("jpeg", "png"))
    if response_format == "base64":
        template = b'{"index": %d, "type": "b64_json", "b64_json": "%%s"}'
    else:
        template = b'{"index": %d, "type": "url", "url": "data:image/png;base64,%%s"}'
    templates = [template % k for k in range(n)]
    items = numbered(settings, templates, prompt, seed, steps, (width, height))
    head = json.dumps({"id": request_id, "model": model, "object": "list"})[:-1].encode()
    return b"".join((head, b', "data": [', b", ".join(items), b"]}"))
