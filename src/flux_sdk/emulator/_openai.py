"""The OpenAI-style route, ``POST /v1/images/generations`` (and DeepInfra's
``/v1/openai/images/generations``).

It answers OpenAI's Images API shape: the `OpenAIImages` provider (nscale, DeepInfra,
self-hosted servers) runs against it, and OpenAI-style clients (openai-python among them)
can be measured against the same images as flux_sdk's other providers.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from typing import Any

from flux_sdk.emulator._asgi import Scope
from flux_sdk.emulator._faults import BAD_BASE64, Fault
from flux_sdk.emulator._host import Settings
from flux_sdk.emulator._request import SEED_MAX, Reject, int_field, json_object, one_of
from flux_sdk.emulator._wire import (
    FaultAnswers,
    OpenAIStyleHost,
    numbered,
    openai_failures,
)

PATH = "/v1/images/generations"
# DeepInfra serves the same API under /v1/openai.
DEEPINFRA_PATH = "/v1/openai/images/generations"
# OpenAI's limit for its GPT image models; the DALL-E models take fewer characters.
_PROMPT_CHARS = 32000
_SIZE = re.compile(r"([0-9]{1,4})x([0-9]{1,4})")
# The messages are the emulator's own, in the shape OpenAI uses for these statuses.
_FAULTS = FaultAnswers(
    openai_failures(
        {
            Fault.RATE_LIMIT: (429, "Rate limit reached for images per minute"),
            Fault.SERVER_ERROR: (500, "The server had an error while processing your request"),
            Fault.BAD_GATEWAY: (502, "Bad gateway"),
            Fault.UNAVAILABLE: (503, "The server is overloaded or not ready yet"),
        },
        rate_limit_type="requests",
        rate_limit_code="rate_limit_exceeded",
    ),
    cut='{"created": 0, "data": [{"b64_json": "',
    broken={"created": 0, "data": [{"b64_json": BAD_BASE64}]},
)


class OpenAIImages(OpenAIStyleHost):
    """OpenAI's ``ImagesResponse``: ``{"created", "data": [{"b64_json"} or {"url"}]}``.

    Steps are fixed at 4 and ``seed`` (not an OpenAI field; send it as extra body) is
    read as on Dataoorts, so a prompt and seed give the same PNG as the Dataoorts route.
    Image ``k`` of ``n`` uses seed ``seed + k`` (no seed: None, then ``k``).
    """

    name = "openai"
    paths = (PATH, DEEPINFRA_PATH)
    auth_error = "Incorrect API key provided."
    faults = _FAULTS

    def reply(
        self, settings: Settings, scope: Scope, body: bytes, headers: Mapping[str, str]
    ) -> tuple[bytes, str]:
        return _images(settings, json_object(body)), "application/json"


def _images(settings: Settings, request: Mapping[str, Any]) -> bytes:
    prompt = request.get("prompt")
    if not isinstance(prompt, str) or not prompt:
        raise Reject(400, "'prompt' must be a non-empty string", param="prompt")
    if len(prompt) > _PROMPT_CHARS:
        raise Reject(
            400,
            f"'prompt' is too long: {len(prompt)} characters, the maximum is {_PROMPT_CHARS}",
            param="prompt",
        )
    model = request.get("model")
    if model is not None and not isinstance(model, str):
        raise Reject(400, "'model' must be a string", param="model")
    n = int_field(request, "n", 1, 1, 10, status=400)
    seed = int_field(request, "seed", None, 0, SEED_MAX, status=400)
    width, height = _size(request.get("size"), settings.default_size)
    response_format = request.get("response_format")
    if response_format is None:
        response_format = "b64_json"  # what the GPT image models always answer
    one_of("response_format", response_format, ("b64_json", "url"))
    # Only DALL-E 3 rewrites prompts; the emulator "revises" it to itself.
    revised = (
        b', "revised_prompt": ' + json.dumps(prompt).encode()
        if (model or "").startswith("dall-e-3")
        else b""
    )
    # A data: URL stands in for a hosted one: it never expires and needs no second route.
    if response_format == "b64_json":
        template = b'{"b64_json": "%s"' + revised + b"}"
    else:
        template = b'{"url": "data:image/png;base64,%s"' + revised + b"}"
    items = numbered(settings, [template] * n, prompt, seed, 4, (width, height))
    created = str(int(time.time())).encode()
    return b"".join((b'{"created": ', created, b', "data": [', b", ".join(items), b"]}"))


def _size(size: object, default: int) -> tuple[int, int]:
    if size is None or size == "auto":
        return default, default
    match = _SIZE.fullmatch(size) if isinstance(size, str) else None
    if match is None or not all(64 <= int(side) <= 2048 for side in match.groups()):
        raise Reject(
            400,
            f"'size' must be 'auto' or 'WIDTHxHEIGHT' with sides 64 to 2048, got {size!r}",
            param="size",
        )
    return int(match[1]), int(match[2])
