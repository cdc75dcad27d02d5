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

from flux_sdk.emulator._asgi import Scope
from flux_sdk.emulator._host import Settings
from flux_sdk.emulator._request import Reject, int_field, json_object, with_base64
from flux_sdk.emulator._wire import V4Host, draw, v4_envelope, v4_faults

MODEL = "@cf/black-forest-labs/flux-1-schnell"
# The path arrives percent-decoded, so `@cf%2Fblack-forest-labs%2F...` lands here too.
PATH = re.compile(r"/client/v4/accounts/[A-Za-z0-9_-]+/ai/run/(.+)")
QUOTA_MESSAGE = (
    "you have used up your daily free allocation of 10,000 neurons, please upgrade to "
    "Cloudflare's Workers Paid plan if you would like to continue usage."
)
_ENVELOPE = json.dumps(v4_envelope("image")).encode()
_PROPERTIES = frozenset({"prompt", "steps"})


class CloudflareWorkersAI(V4Host):
    """Workers AI's ``ai/run`` for FLUX.1 [schnell]: Bearer token, the v4 envelope."""

    name = "cloudflare"
    faults = v4_faults("image", rate_limited="Capacity temporarily exceeded, please try again.")

    def matches(self, path: str) -> bool:
        return PATH.fullmatch(path) is not None

    def response_headers(self, request_id: str) -> dict[str, str]:
        return {"cf-ray": f"{request_id}-EMU"}

    def reply(
        self, settings: Settings, scope: Scope, body: bytes, headers: Mapping[str, str]
    ) -> tuple[bytes, str]:
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
        png = draw(settings, prompt, None, steps, size, size)
        return with_base64(_ENVELOPE, png), "application/json"
