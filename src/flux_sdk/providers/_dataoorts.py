"""Dataoorts: ``POST {base_url}`` with ``{"model", "data"}``; JSON or raw image bytes back.

The envelope matches Cloudflare Workers AI (``success``, ``errors``, ``result``), so
failures are read the way that service reports them, and the image is read from
``result.image_base64`` (Dataoorts' docs) or ``result.image`` (Cloudflare's schema).
"""

from __future__ import annotations

import os

import httpx
from pydantic_core import to_json

from flux_sdk._base._models import GeneratedImage, GenerateRequest
from flux_sdk._base._secret import SecretLike

from ._base import ParamRules
from ._fields import json_headers, model_name
from ._wire import check_base_url, resolve_api_key
from ._workers_ai import answer_image, input_body

__all__ = ["Dataoorts"]

DEFAULT_BASE_URL = "https://cloud.dataoorts.com/api/v1"
FLUX_SCHNELL = "black-forest-labs/flux-1-schnell"

# From the model's page: prompt 2..2048 characters, steps 1..8, no width or height.
FLUX_RULES = ParamRules(prompt_chars=(2, 2048), steps=(1, 8), size=None)
# Other models on the same endpoint take height/width 256..2048 and `num_steps` up to 20.
OTHER_MODEL_RULES = ParamRules(prompt_chars=(2, 2048), steps=(1, 20), size=(256, 2048))


_ACCEPT = "application/json, image/png, image/jpeg, image/webp"


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
        api_key: str | SecretLike | None = None,
        *,
        model: str = FLUX_SCHNELL,
        base_url: str | None = None,
    ) -> None:
        self.api_key = resolve_api_key(api_key, "DATAOORTS_API_KEY", "Dataoorts")
        self.model = model_name(model, "Dataoorts")
        self.rules = FLUX_RULES if model == FLUX_SCHNELL else OTHER_MODEL_RULES
        # FLUX.1 [schnell] reads `steps`; the other image models there read `num_steps`.
        self._steps_field = "steps" if model == FLUX_SCHNELL else "num_steps"
        url = base_url or os.environ.get("DATAOORTS_BASE_URL") or DEFAULT_BASE_URL
        self.base_url = check_base_url(url, provider="Dataoorts", setting="the Dataoorts base URL")
        # Built once per provider; it answers JSON or the image itself, as the deployment
        # is set up.
        self._headers = json_headers("Bearer", self.api_key, accept=_ACCEPT)

    def __repr__(self) -> str:
        return f"Dataoorts(model={self.model!r}, base_url={str(self.base_url)!r})"

    def build_request(self, request: GenerateRequest) -> httpx.Request:
        data = input_body(request, steps_field=self._steps_field, provider=self.name)
        body = to_json({"model": self.model, "data": data})
        return httpx.Request("POST", self.base_url, headers=self._headers, content=body)

    def parse_response(self, request: GenerateRequest, response: httpx.Response) -> GeneratedImage:
        return answer_image(
            response,
            provider=self.name,
            request=request,
            # Dataoorts documents image_base64; Cloudflare's schema, which its envelope
            # copies, says image.
            field=("image_base64", "image"),
            secrets=(self.api_key,),
            key_env=self.key_env,
        )
