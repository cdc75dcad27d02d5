"""Together AI: ``POST {base_url}/v1/images/generations``, Bearer key, base64 answers.

The base URL is taken as the official ``together`` client takes it (and
``TOGETHER_BASE_URL`` with it): without ``/v1``, which each request path adds.

Together's spec defaults ``steps`` to 20 while schnell is made for 4, so ``steps`` is
always sent for schnell. ``response_format`` is ``"base64"`` here (OpenAI says
``"b64_json"``), and the answer is ``{"data": [{"index", "type", "b64_json"}]}``.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import httpx
from pydantic_core import to_json

from flux_sdk._base._models import GeneratedImage, GenerateRequest
from flux_sdk._base._secret import SecretLike

from ._base import ParamRules
from ._fields import json_headers, model_name, request_fields
from ._images_api import image_from_data, raise_for_error
from ._wire import check_base_url, resolve_api_key

__all__ = ["Together"]

DEFAULT_BASE_URL = "https://api.together.ai"
FLUX_SCHNELL = "black-forest-labs/FLUX.1-schnell"
# The docs give steps 1-50 for every image model and ask for sides in multiples of 8;
# no maximum side is published, so the common FLUX range is used.
RULES = ParamRules(steps=(1, 50), size=(64, 2048), size_multiple=8)
SCHNELL_STEPS = 4
_ARGUMENTS = frozenset({"prompt", "steps", "seed", "width", "height"})
# The other fields flux_sdk sets: one image, as base64.
_FIXED = frozenset({"model", "n", "response_format"})


def _refusal(key: str, value: Any) -> str | None:
    if key not in _ARGUMENTS and key not in _FIXED:
        return None
    instead = f"pass {key}=... instead" if key in _ARGUMENTS else "leave it out"
    return f"extra_body[{key!r}] duplicates a field flux_sdk sets for Together; {instead}"


class Together:
    """FLUX.1 [schnell] (or another image model) on Together AI's serverless API.

    The key falls back to ``TOGETHER_API_KEY`` and the base URL to ``TOGETHER_BASE_URL``,
    then to ``https://api.together.ai``, as the official ``together`` client reads them. The
    request goes to ``{base_url}/v1/images/generations``; a base URL that ends in ``/v1``
    (flux_sdk's older form) still works, with a ``DeprecationWarning``. Fields in ``extra_body``
    (``output_format``, ``guidance_scale``, ``negative_prompt``, ...) go into the body.

    On a 429 without ``Retry-After``, the error's ``retry_after`` is read from
    ``x-ratelimit-reset``, so the client's retry waits what Together suggests.
    """

    name = "together"
    rules = RULES

    def __init__(
        self,
        api_key: str | SecretLike | None = None,
        *,
        model: str = FLUX_SCHNELL,
        base_url: str | None = None,
    ) -> None:
        self.api_key = resolve_api_key(api_key, "TOGETHER_API_KEY", "Together")
        self.model = model_name(model, "Together")
        # Schnell's steps are sent even when not given: the API's own default is 20.
        self._default_steps = SCHNELL_STEPS if "schnell" in model.lower() else None
        url = base_url or os.environ.get("TOGETHER_BASE_URL") or DEFAULT_BASE_URL
        base = check_base_url(url, provider="Together", setting="the Together base URL")
        path = base.path.rstrip("/")
        if path.endswith("/v1"):
            warnings.warn(
                f"Together's base URL is now given without /v1, as the official together "
                f"client takes it (and TOGETHER_BASE_URL with it): use "
                f"{str(base.copy_with(path=path[:-3] or '/')).rstrip('/')!r}",
                DeprecationWarning,
                stacklevel=2,
            )
            path = path[:-3]
        self.url = base.copy_with(path=f"{path}/v1/images/generations")
        self._headers = json_headers("Bearer", self.api_key)

    def __repr__(self) -> str:
        return f"Together(model={self.model!r}, url={str(self.url)!r})"

    def build_request(self, request: GenerateRequest) -> httpx.Request:
        fields = {
            "model": self.model,
            "prompt": request.prompt,
            "steps": request.steps if request.steps is not None else self._default_steps,
            "seed": request.seed,
            "width": request.width,
            "height": request.height,
            "n": 1,
            "response_format": "base64",
        }
        body = request_fields(fields, request, provider=self.name, refuse=_refusal)
        return httpx.Request("POST", self.url, headers=self._headers, content=to_json(body))

    def parse_response(self, request: GenerateRequest, response: httpx.Response) -> GeneratedImage:
        secrets = (self.api_key,)
        raise_for_error(response, provider=self.name, secrets=secrets)
        return image_from_data(response, provider=self.name, request=request, secrets=secrets)
