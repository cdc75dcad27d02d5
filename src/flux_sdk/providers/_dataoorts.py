"""Dataoorts: ``POST {base_url}`` with ``{"model", "data"}``; JSON or raw image bytes back.

The envelope matches Cloudflare Workers AI (``success``, ``errors``, ``result``), so
failures are read the way that service reports them; see ../shared/PROVIDERS.md.
"""

from __future__ import annotations

import os
from typing import Any

import httpx
from pydantic import SecretStr
from pydantic_core import ValidationError, core_schema, to_json

from flux_sdk._errors import ConfigError, InvalidRequestError, InvalidResponseError, ProviderError
from flux_sdk._models import GeneratedImage, GenerateRequest

from ._base import ParamRules
from ._wire import (
    check_base_url,
    decode_base64,
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

__all__ = ["Dataoorts"]

DEFAULT_BASE_URL = "https://cloud.dataoorts.com/api/v1"
FLUX_SCHNELL = "black-forest-labs/flux-1-schnell"

# From the model's page: prompt 2..2048 characters, steps 1..8, no width or height.
FLUX_RULES = ParamRules(prompt_chars=(2, 2048), steps=(1, 8), size=None)
# Other models on the same endpoint take height/width 256..2048 and `num_steps` up to 20.
OTHER_MODEL_RULES = ParamRules(prompt_chars=(2, 2048), steps=(1, 20), size=(256, 2048))

# Workers AI codes for failures that pass: 3007 timeout, 3008 aborted, 3040 out of capacity.
_TRANSIENT_CODES = frozenset({3007, 3008, 3040})
# 3036: the daily allocation is spent. A 429, but retrying cannot help until it resets.
_QUOTA_SPENT = 3036
_RESERVED = frozenset({"prompt", "steps", "num_steps", "seed", "width", "height"})


_ENVELOPE = json_shape(
    {
        "success": optional(core_schema.bool_schema()),
        "result": optional(
            core_schema.typed_dict_schema({"image_base64": optional(core_schema.str_schema())})
        ),
        "errors": optional(core_schema.list_schema(core_schema.any_schema())),
    }
)


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
        body = response.content
        if not response.is_success:
            try:
                raise_for_status(
                    response, provider=self.name, secrets=(self.api_key,), key_env=self.key_env
                )
            except ProviderError as exc:
                if response.status_code == 429 and _QUOTA_SPENT in _codes(body):
                    exc.retryable = False
                raise
        image = sniffed_image(
            response, provider=self.name, request=request, secrets=(self.api_key,)
        )
        if image is not None:
            return image
        if not media_type(response).startswith("application/json"):
            return image_from_body(
                response, provider=self.name, request=request, secrets=(self.api_key,)
            )
        envelope = parse_json(_ENVELOPE, response, provider=self.name, secrets=(self.api_key,))
        result = envelope.get("result")
        b64 = result.get("image_base64") if result else None
        errors = envelope.get("errors") or []
        if envelope.get("success") is False or not b64:
            if errors or envelope.get("success") is False:
                raise self._reported_failure(errors, response, rid)
            raise InvalidResponseError(
                f"{self.name} answered HTTP {response.status_code} without result.image_base64",
                provider=self.name,
                status_code=response.status_code,
                request_id=rid,
            )
        data = decode_base64(b64, provider=self.name, field="result.image_base64", request_id=rid)
        return GeneratedImage.from_data(data, provider=self.name, request=request, request_id=rid)

    def _reported_failure(
        self, errors: list[Any], response: httpx.Response, rid: str | None
    ) -> ProviderError:
        messages = [str(e.get("message", e)) if isinstance(e, dict) else str(e) for e in errors]
        detail = redact("; ".join(messages) or "no error message", (self.api_key,))
        codes = _codes_of(errors)
        return ProviderError(
            f"{self.name} reported a failure: {detail[:1000]}",
            provider=self.name,
            status_code=response.status_code,
            body=excerpt(response.content, (self.api_key,)),
            request_id=rid,
            retryable=bool(codes & _TRANSIENT_CODES),
        )


def _codes(body: bytes) -> set[int]:
    try:
        return _codes_of(_ENVELOPE.validate_json(body).get("errors") or [])
    except ValidationError:
        return set()


def _codes_of(errors: list[Any]) -> set[int]:
    codes = set()
    for error in errors:
        code = error.get("code") if isinstance(error, dict) else None
        if isinstance(code, int) and not isinstance(code, bool):
            codes.add(code)
        elif isinstance(code, str) and code.isdigit():
            codes.add(int(code))
    return codes
