"""Baseten: ``POST https://model-{id}.api.baseten.co/{environment}/predict``.

The body is the FLUX.1 [schnell] truss's input (``prompt``, ``seed``,
``num_inference_steps``, ``width``, ``height`` and any extra field); the answer is
``{"data": "<base64>"}`` (the docs' example says ``output``, so that is read too).
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Any

import httpx
from pydantic_core import core_schema, to_json

from flux_sdk._base._errors import (
    ConfigError,
    InvalidResponseError,
    ProviderError,
)
from flux_sdk._base._models import GeneratedImage, GenerateRequest
from flux_sdk._base._secret import SecretLike

from ._base import ParamRules
from ._base64 import decode_base64
from ._fields import json_headers, request_fields, warn_random_seed
from ._wire import (
    check_base_url,
    excerpt,
    image_from_body,
    json_shape,
    media_type,
    optional,
    parse_json,
    raise_for_status,
    redact,
    request_id,
    resolve_api_key,
    sniffed_image,
)

__all__ = ["Baseten"]

# The truss reads width/height (default 1024); FLUX works on multiples of 16. Only
# 1024x1024, 1216x832 and 896x1152 are pre-compiled; other sizes recompile (slow, once).
RULES = ParamRules(steps=(1, 50), size=(64, 2048), size_multiple=16)
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")
_RESERVED = frozenset({"prompt", "seed", "num_inference_steps", "width", "height"})
# diffusers' own bound on the T5 sequence length; the truss passes the value straight on.
MAX_SEQUENCE_LENGTH = 512


_OUTPUT = json_shape(
    {
        "data": optional(core_schema.str_schema()),
        "output": optional(core_schema.str_schema()),
        "error": optional(core_schema.str_schema()),
    }
)


class Baseten:
    """FLUX.1 [schnell] deployed on Baseten from its model library.

    The key falls back to ``BASETEN_API_KEY``, the model id to ``BASETEN_MODEL_ID`` and the
    base URL to ``BASETEN_BASE_URL``, then to ``https://model-{model_id}.api.baseten.co``.
    Choose the deployment with ``environment`` (``"production"``, ``"development"`` or a
    custom environment's name) or a ``deployment_id``. Fields in
    ``extra_body`` (``prompt2``, ``max_sequence_length``, ...) go into the body.

    A seed of 0 means "random" to this model: flux_sdk sends it but warns, and the
    image's ``seed`` is None (the one used is not returned). The extras the model reads
    (``prompt2``, ``max_sequence_length``, ``guidance_scale``) are checked before
    sending: a bad value crashes the model into a 500 that is billed and retried.
    """

    name = "baseten"
    # Named in the advice of a 401/403; None where the key is not the user's to set.
    key_env: str | None = "BASETEN_API_KEY"
    rules = RULES

    def __init__(
        self,
        api_key: str | SecretLike | None = None,
        model_id: str | None = None,
        *,
        environment: str = "production",
        deployment_id: str | None = None,
        base_url: str | None = None,
    ) -> None:
        self.api_key = resolve_api_key(api_key, "BASETEN_API_KEY", "Baseten")
        model_id = model_id or os.environ.get("BASETEN_MODEL_ID") or None
        base_url = base_url or os.environ.get("BASETEN_BASE_URL") or None
        if model_id is not None and not _NAME.fullmatch(model_id):
            raise ConfigError(f"the Baseten model id {model_id!r} is not a valid id")
        if base_url is None:
            if model_id is None:
                raise ConfigError(
                    "no Baseten model id: pass model_id=... or set the BASETEN_MODEL_ID "
                    "environment variable (or give base_url)"
                )
            base_url = f"https://model-{model_id}.api.baseten.co"
        self.model_id = model_id
        self.environment = environment
        self.deployment_id = deployment_id
        base = check_base_url(base_url, provider="Baseten", setting="the Baseten base URL")
        self.url = base.copy_with(path=base.path.rstrip("/") + _path(environment, deployment_id))
        self._headers = json_headers("Api-Key", self.api_key)

    def __repr__(self) -> str:
        return f"Baseten(url={str(self.url)!r})"

    def build_request(self, request: GenerateRequest) -> httpx.Request:
        warn_random_seed(request, "Baseten's FLUX.1 [schnell]")
        fields = {
            "prompt": request.prompt,
            "seed": request.seed,
            "num_inference_steps": request.steps,
            "width": request.width,
            "height": request.height,
        }
        body = request_fields(fields, request, provider=self.name, refuse=_refusal)
        return httpx.Request("POST", self.url, headers=self._headers, content=to_json(body))

    def parse_response(self, request: GenerateRequest, response: httpx.Response) -> GeneratedImage:
        image = self._image(request, response)
        if request.seed == 0:  # the model drew a random seed and does not say which
            image = dataclasses.replace(image, seed=None)
        return image

    def _image(self, request: GenerateRequest, response: httpx.Response) -> GeneratedImage:
        rid = request_id(response.headers, (self.api_key,))
        raise_for_status(
            response, provider=self.name, secrets=(self.api_key,), key_env=self.key_env
        )
        body = response.content
        image = sniffed_image(
            response, provider=self.name, request=request, secrets=(self.api_key,)
        )
        if image is not None:
            return image
        if media_type(response).startswith("image/"):
            return image_from_body(
                response, provider=self.name, request=request, secrets=(self.api_key,)
            )
        output = parse_json(_OUTPUT, response, provider=self.name, secrets=(self.api_key,))
        field = "data" if output.get("data") else "output"
        b64 = output.get(field)
        if not b64:
            if output.get("error"):
                raise ProviderError(
                    f"{self.name} reported a failure: "
                    f"{redact(output['error'], (self.api_key,))[:1000]}",
                    provider=self.name,
                    status_code=response.status_code,
                    body=excerpt(body, (self.api_key,)),
                    request_id=rid,
                    retryable=False,
                )
            raise InvalidResponseError(
                f"{self.name} answered HTTP {response.status_code} without 'data' or 'output'",
                provider=self.name,
                status_code=response.status_code,
                request_id=rid,
            )
        data = decode_base64(b64, provider=self.name, field=field, request_id=rid)
        return GeneratedImage.from_data(data, provider=self.name, request=request, request_id=rid)


def _refusal(key: str, value: Any) -> str | None:
    """Refuse an extra the request sets already, or one the model would crash on (a paid
    500, retried): see PROVIDERS.md."""
    if key in _RESERVED:
        return (
            f"extra_body[{key!r}] duplicates a field of the request; use the "
            f"{'steps' if key == 'num_inference_steps' else key}=... argument instead"
        )
    rule = None
    if key == "prompt2" and not isinstance(value, str):
        rule = "a string (the second, T5 prompt)"
    elif key == "max_sequence_length" and (
        isinstance(value, bool)
        or not isinstance(value, int)
        or not 1 <= value <= MAX_SEQUENCE_LENGTH
    ):
        rule = f"an integer from 1 to {MAX_SEQUENCE_LENGTH}"
    elif key == "guidance_scale" and (
        isinstance(value, bool) or not isinstance(value, (int, float))
    ):
        rule = "a number (the model uses 0.0 whatever is sent)"
    if rule is None:
        return None
    return (
        f"baseten needs extra_body[{key!r}] to be {rule} (got {value!r:.80}); the model "
        "would fail on it with a billed HTTP 500"
    )


def _path(environment: str, deployment_id: str | None) -> str:
    if deployment_id is not None:
        if environment != "production":
            raise ConfigError("give Baseten either environment=... or deployment_id=..., not both")
        if not _NAME.fullmatch(deployment_id):
            raise ConfigError(f"the Baseten deployment id {deployment_id!r} is not a valid id")
        return f"/deployment/{deployment_id}/predict"
    if not _NAME.fullmatch(environment):
        raise ConfigError(f"the Baseten environment name {environment!r} is not a valid name")
    if environment in ("production", "development"):
        return f"/{environment}/predict"
    return f"/environments/{environment}/predict"
