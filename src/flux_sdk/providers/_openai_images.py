"""Any host with an OpenAI-style images API: ``POST {base_url}/images/generations``.

nscale, DeepInfra (under ``/v1/openai``) and self-hosted servers speak it. The body is
OpenAI's (``model``, ``prompt``, ``n``, ``size: "WxH"``, ``response_format:
"b64_json"``); OpenAI's API has no steps, so a request that sets them is refused rather
than silently drawn at the host's default.
"""

from __future__ import annotations

import os
from typing import Any

import httpx
from pydantic_core import to_json

from flux_sdk._base._errors import ConfigError, InvalidRequestError
from flux_sdk._base._models import GeneratedImage, GenerateRequest
from flux_sdk._base._secret import SecretLike

from ._base import ParamRules
from ._fields import json_headers, model_name, request_fields
from ._images_api import image_from_data, raise_for_error
from ._wire import check_base_url, resolve_api_key

__all__ = ["OpenAIImages"]

FLUX_SCHNELL = "black-forest-labs/FLUX.1-schnell"
DEFAULT_KEY_ENV = "OPENAI_IMAGES_API_KEY"
BASE_URL_ENV = "OPENAI_IMAGES_BASE_URL"
# nscale's default size is 512x512: a size is always sent, so every host draws the same.
DEFAULT_SIDE = 1024
# No steps on this API; sizes as FLUX draws them. A host's own limits can be passed in.
RULES = ParamRules(size=(64, 2048), size_multiple=8)
_RESERVED = frozenset({"model", "prompt", "n", "size", "response_format", "seed"})
_INSTEAD = {"prompt": "the prompt", "size": "width=... and height=...", "seed": "seed=..."}


class OpenAIImages:
    """FLUX.1 [schnell] on a host that speaks OpenAI's images API.

    ``base_url`` is what an OpenAI client would take (``https://inference.api.nscale.com/v1``,
    ``https://api.deepinfra.com/v1/openai``); without one, ``OPENAI_IMAGES_BASE_URL``. A
    base URL with no path gets ``/v1``. The key is ``api_key``, else the environment
    variable ``api_key_env`` names, else ``OPENAI_IMAGES_API_KEY`` (never
    ``OPENAI_API_KEY``: an OpenAI key must not go to another company). ``name`` labels
    errors, events and images (``"deepinfra"``, say); ``rules`` sets the host's limits.

    ``seed`` is sent as a top-level ``seed`` field, which OpenAI-style servers commonly
    accept; a host that ignores it will not reproduce images. ``steps`` cannot be sent:
    pass the host's own field in ``extra_body`` if it has one.
    """

    def __init__(
        self,
        base_url: str | None = None,
        *,
        api_key: str | SecretLike | None = None,
        api_key_env: str | None = None,
        model: str = FLUX_SCHNELL,
        name: str = "openai",
        rules: ParamRules = RULES,
    ) -> None:
        if not isinstance(name, str) or not name.strip():
            raise ConfigError("the provider name must be a non-empty string")
        self.name = name
        if api_key_env is not None and (not isinstance(api_key_env, str) or not api_key_env):
            raise ConfigError("api_key_env must name an environment variable")
        self.api_key = resolve_api_key(api_key, api_key_env or DEFAULT_KEY_ENV, name)
        if not isinstance(rules, ParamRules):
            raise ConfigError(f"rules must be a ParamRules (got {type(rules).__name__})")
        self.model = model_name(model, name)
        self.rules = rules
        url = base_url or os.environ.get(BASE_URL_ENV)
        if not url:
            raise ConfigError(
                f"no base URL for {name}: pass the host's OpenAI base URL "
                "(e.g. https://inference.api.nscale.com/v1) or set " + BASE_URL_ENV
            )
        base = check_base_url(url, provider=name, setting=f"the {name} base URL")
        path = base.path.rstrip("/") or "/v1"
        self.url = base.copy_with(path=f"{path}/images/generations")
        self._headers = json_headers("Bearer", self.api_key)

    def __repr__(self) -> str:
        return f"OpenAIImages(name={self.name!r}, model={self.model!r}, url={str(self.url)!r})"

    def build_request(self, request: GenerateRequest) -> httpx.Request:
        if request.steps is not None:
            raise InvalidRequestError(
                f"{self.name}'s OpenAI-style images API has no steps; leave steps out "
                "(the host picks them), or pass the host's own field in extra_body",
                provider=self.name,
            )
        if (request.width is None) != (request.height is None):
            raise InvalidRequestError(
                f"{self.name} takes a size as WIDTHxHEIGHT: give both width and height, "
                f"or neither for {DEFAULT_SIDE}x{DEFAULT_SIDE}",
                provider=self.name,
            )
        width = request.width or DEFAULT_SIDE
        height = request.height or DEFAULT_SIDE
        fields = {
            "model": self.model,
            "prompt": request.prompt,
            "n": 1,
            "size": f"{width}x{height}",
            "response_format": "b64_json",
            "seed": request.seed,
        }
        body = request_fields(fields, request, provider=self.name, refuse=self._refusal)
        return httpx.Request("POST", self.url, headers=self._headers, content=to_json(body))

    def _refusal(self, key: str, value: Any) -> str | None:
        if key not in _RESERVED:
            return None
        argument = _INSTEAD.get(key)
        return f"extra_body[{key!r}] duplicates a field flux_sdk sets for {self.name}; " + (
            f"pass {argument} instead" if argument else "leave it out"
        )

    def parse_response(self, request: GenerateRequest, response: httpx.Response) -> GeneratedImage:
        secrets = (self.api_key,)
        raise_for_error(response, provider=self.name, secrets=secrets)
        return image_from_data(response, provider=self.name, request=request, secrets=secrets)
