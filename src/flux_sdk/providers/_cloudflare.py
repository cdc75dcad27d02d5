"""Cloudflare Workers AI: ``POST {base}/accounts/{account_id}/ai/run/{model}``.

FLUX.1 [schnell]'s input schema there is ``{"prompt", "steps"}`` and nothing else (no
seed, no size; extra properties are refused), so anything more fails here, before a
request is sent. The answer is the Workers AI envelope with ``result.image`` (base64).
"""

from __future__ import annotations

import os
import re
from typing import Any

import httpx
from pydantic_core import to_json

from flux_sdk._base._errors import ConfigError
from flux_sdk._base._models import GeneratedImage, GenerateRequest
from flux_sdk._base._secret import SecretLike

from ._base import ParamRules
from ._fields import json_headers
from ._wire import check_base_url, resolve_api_key
from ._workers_ai import answer_image, input_body

__all__ = ["CloudflareWorkersAI"]

DEFAULT_BASE_URL = "https://api.cloudflare.com/client/v4"
FLUX_SCHNELL = "@cf/black-forest-labs/flux-1-schnell"

# cloudflare-docs' flux-1-schnell.json: prompt 1..2048, steps at most 8 (no minimum is
# declared; 1 is ours), no seed, no width or height.
FLUX_RULES = ParamRules(prompt_chars=(1, 2048), steps=(1, 8), size=None, seed_supported=False)
# The catalogue's other text-to-image models (SDXL and kin) take seed, width/height
# 256..2048 and `num_steps` up to 20, and answer raw image bytes.
OTHER_MODEL_RULES = ParamRules(prompt_chars=(1, 2048), steps=(1, 20), size=(256, 2048))
_ACCOUNT = re.compile(r"[A-Za-z0-9_-]{1,64}")
_MODEL = re.compile(r"@?[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*")


class CloudflareWorkersAI:
    """FLUX.1 [schnell] (or another text-to-image model) on Cloudflare Workers AI.

    The token falls back to ``CLOUDFLARE_API_TOKEN`` and the account id to
    ``CLOUDFLARE_ACCOUNT_ID``. FLUX.1 [schnell] there takes only a prompt and steps:
    a seed, a size or an ``extra_body`` field is an `InvalidRequestError` before
    anything is sent. For other models, ``extra_body`` fields go into the body.
    """

    name = "cloudflare"

    def __init__(
        self,
        api_key: str | SecretLike | None = None,
        account_id: str | None = None,
        *,
        model: str = FLUX_SCHNELL,
        base_url: str | None = None,
    ) -> None:
        self.api_key = resolve_api_key(api_key, "CLOUDFLARE_API_TOKEN", "Cloudflare")
        account_id = account_id or os.environ.get("CLOUDFLARE_ACCOUNT_ID") or None
        if account_id is None:
            raise ConfigError(
                "no Cloudflare account id: pass account_id=... or set the "
                "CLOUDFLARE_ACCOUNT_ID environment variable (it is in the dashboard's URL)"
            )
        if not _ACCOUNT.fullmatch(account_id):
            raise ConfigError(f"the Cloudflare account id {account_id!r} is not a valid id")
        if (
            not isinstance(model, str)
            or not _MODEL.fullmatch(model)
            or any(not part.strip(".") for part in model.split("/"))
        ):
            raise ConfigError(
                f"the Cloudflare model must be a model name such as {FLUX_SCHNELL!r} "
                f"(got {model!r})"
            )
        self.account_id = account_id
        self.model = model
        self.rules = FLUX_RULES if model == FLUX_SCHNELL else OTHER_MODEL_RULES
        self._steps_field = "steps" if model == FLUX_SCHNELL else "num_steps"
        base = check_base_url(
            base_url or DEFAULT_BASE_URL, provider="Cloudflare", setting="the Cloudflare base URL"
        )
        path = f"{base.path.rstrip('/')}/accounts/{account_id}/ai/run/{model}"
        self.url = base.copy_with(path=path)
        self._headers = json_headers("Bearer", self.api_key)

    def __repr__(self) -> str:
        return f"CloudflareWorkersAI(model={self.model!r}, url={str(self.url)!r})"

    def build_request(self, request: GenerateRequest) -> httpx.Request:
        # The rules have refused seed and size for FLUX.1 [schnell] already; this body
        # is what its schema allows, and a field it does not know would be refused there.
        body = input_body(
            request, steps_field=self._steps_field, provider=self.name, refuse=self._refusal
        )
        return httpx.Request("POST", self.url, headers=self._headers, content=to_json(body))

    def _refusal(self, key: str, value: Any) -> str | None:
        if self.model != FLUX_SCHNELL:
            return None
        return (
            f"{self.name}'s {FLUX_SCHNELL} takes only a prompt and steps; leave "
            f"extra_body[{key!r}] out"
        )

    def parse_response(self, request: GenerateRequest, response: httpx.Response) -> GeneratedImage:
        # The catalogue's other image models answer with the image's bytes.
        return answer_image(
            response, provider=self.name, request=request, field="image", secrets=(self.api_key,)
        )
