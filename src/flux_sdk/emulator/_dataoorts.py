"""The Dataoorts route, ``POST /api/v1``: its body, its answers and its error envelope."""

from __future__ import annotations

import json
from collections.abc import Mapping

from flux_sdk.emulator._asgi import Scope
from flux_sdk.emulator._host import Settings
from flux_sdk.emulator._request import SEED_MAX, Reject, int_field, json_object, with_base64
from flux_sdk.emulator._wire import V4Host, draw, v4_envelope, v4_faults

MODEL = "black-forest-labs/flux-1-schnell"
PATH = "/api/v1"
_ENVELOPE = json.dumps(v4_envelope("image_base64")).encode()


class Dataoorts(V4Host):
    """Dataoorts' FLUX.1 [schnell]: Bearer key, ``{"model", "data"}``, Workers-AI errors."""

    name = "dataoorts"
    paths = (PATH,)
    faults = v4_faults(
        "image_base64",
        rate_limited="No more data centers to forward the request to",
        bad_gateway="Bad gateway: the inference server did not answer",
    )

    def reply(
        self, settings: Settings, scope: Scope, body: bytes, headers: Mapping[str, str]
    ) -> tuple[bytes, str]:
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
        png = draw(settings, prompt, seed, steps, size, size)
        if settings.dataoorts_response == "raw":
            return png, "image/png"
        return with_base64(_ENVELOPE, png), "application/json"
