"""Dataoorts: ``POST {base_url}`` with ``{"model", "data"}``; JSON or raw image bytes back.

The envelope matches Cloudflare Workers AI (``success``, ``errors``, ``result``), so
failures are read the way that service reports them, and the image is read from
``result.image_base64`` (Dataoorts' docs) or ``result.image`` (Cloudflare's schema).
"""

from __future__ import annotations

import os
from typing import Any

import httpx
from pydantic import SecretStr
from pydantic_core import to_json

from flux_sdk._base._errors import ConfigError, InvalidRequestError
from flux_sdk._base._models import GeneratedImage, GenerateRequest

from ._base import ParamRules
from ._wire import (
    check_base_url,
    image_from_body,
    media_type,
    request_id,
    resolve_api_key,
    sniffed_image,
)
from ._workers_ai import envelope_image, raise_for_envelope_status

__all__ = ["Dataoorts"]

DEFAULT_BASE_URL = "https://cloud.dataoorts.com/api/v1"
FLUX_SCHNELL = "black-forest-labs/flux-1-schnell"

# From the model's page: prompt 2..2048 characters, steps 1..8, no width or height.
FLUX_RULES = ParamRules(prompt_chars=(2, 2048), steps=(1, 8), size=None)
# Other models on the same endpoint take height/width 256..2048 and `num_steps` up to 20.
OTHER_MODEL_RULES = ParamRules(prompt_chars=(2, 2048), steps=(1, 20), size=(256, 2048))

_RESERVED = frozenset({"prompt", "steps", "num_steps", "seed", "width", "height"})


class Dataoorts:
    """FLUX.1 [schnell] (or another image model) on Dataoorts' serverless API.

    The key falls back to ``DATAOORTS_API_KEY`` and the base URL to
    ``DATAOORTS_BASE_URL``, then to ``https://cloud.dataoorts.com/api/v1``; the request is
    POSTed to the base URL itself. Fields in ``extra_body`` go into ``data``.
    """

    name = "dataoorts"
    # Named in the advice of a 401/403; None where the key is not the user's to set.
    key_env: str | None = "DATAOORTS_API_KEY"

    def __init__(
        self,
        api_key: str | SecretStr | None = None,
        *,
        model: str = FLUX_SCHNELL,
        base_url: str | None = None,
    ) -> None:
        self.api_key = resolve_api_key(api_key, "DATAOORTS_API_KEY", "Dataoorts")
        if not isinstance(model, str) or not model.strip():
            raise ConfigError("the Dataoorts model must be a non-empty string")
        self.model = model
        self.rules = FLUX_RULES if model == FLUX_SCHNELL else OTHER_MODEL_RULES
        # FLUX.1 [schnell] reads `steps`; the other image models there read `num_steps`.
        self._steps_field = "steps" if model == FLUX_SCHNELL else "num_steps"
        url = base_url or os.environ.get("DATAOORTS_BASE_URL") or DEFAULT_BASE_URL
        self.base_url = check_base_url(url, provider="Dataoorts", setting="the Dataoorts base URL")
        # Built once per provider: every request shares the same two headers.
        self._headers = {
            "Authorization": f"Bearer {self.api_key.get_secret_value()}",
            "Content-Type": "application/json",
            # It answers JSON or the image itself, as the deployment is set up.
            "Accept": "application/json, image/png, image/jpeg, image/webp",
        }

    def __repr__(self) -> str:
        return f"Dataoorts(model={self.model!r}, base_url={str(self.base_url)!r})"

    def build_request(self, request: GenerateRequest) -> httpx.Request:
        data: dict[str, Any] = {"prompt": request.prompt}
        if request.steps is not None:
            data[self._steps_field] = request.steps
        if request.seed is not None:
            data["seed"] = request.seed
        if request.width is not None:
            data["width"] = request.width
        if request.height is not None:
            data["height"] = request.height
        for key, value in request.extra_body.items():
            if key in _RESERVED:
                raise InvalidRequestError(
                    f"extra_body[{key!r}] duplicates a field of the request; pass {key}=... instead"
                )
            data[key] = value
        body = to_json({"model": self.model, "data": data})
        return httpx.Request("POST", self.base_url, headers=self._headers, content=body)

    def parse_response(self, request: GenerateRequest, response: httpx.Response) -> GeneratedImage:
        rid = request_id(response.headers, (self.api_key,))
        raise_for_envelope_status(
            response, provider=self.name, secrets=(self.api_key,), key_env=self.key_env
        )
        image = sniffed_image(
            response, provider=self.name, request=request, secrets=(self.api_key,)
        )
        if image is not None:
            return image
        if not media_type(response).startswith("application/json"):
            return image_from_body(
                response, provider=self.name, request=request, secrets=(self.api_key,)
            )
        data = envelope_image(
            response,
            provider=self.name,
            # Dataoorts documents image_base64; Cloudflare's schema, which its envelope
            # copies, says image.
            field=("image_base64", "image"),
            secrets=(self.api_key,),
            request_id=rid,
        )
        return GeneratedImage.from_data(data, provider=self.name, request=request, request_id=rid)
