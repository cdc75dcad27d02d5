"""Hugging Face's own inference on the router: ``POST {router}/hf-inference/models/{model}``.

The body is ``{"inputs": prompt, "parameters": {...}}`` and a success is the image bytes
themselves. Failures come as ``{"error": "..."}``, ``{"error": ["...", ...]}`` or
``{"error", "error_description"}``, with ``X-Error-Message`` sometimes in the headers
(huggingface_hub ``utils/_http.py``). What is read here about the router (its hints,
its ``ratelimit`` header) also serves the hosts `HuggingFace` reaches through it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import httpx
from pydantic_core import from_json, to_json

from flux_sdk._base._errors import InvalidRequestError, ProviderError, error_for_status
from flux_sdk._base._models import GeneratedImage, GenerateRequest
from flux_sdk._base._secret import SecretStr

from ._base import ParamRules
from ._fields import json_headers
from ._wire import excerpt, image_from_body, raise_for_status, redact, request_id, retry_after

__all__ = ["RULES", "HFInference", "router_advice", "router_reset"]

FLUX_SCHNELL = "black-forest-labs/FLUX.1-schnell"
# diffusers' Flux pipeline resizes sides that are not multiples of 16 (with a warning on
# the server), so they are refused here; hf-inference publishes no bounds of its own.
RULES = ParamRules(steps=(1, 50), size=(64, 2048), size_multiple=16)
# The pipeline's own default is 28 steps (billed by compute time); schnell is made for 4.
SCHNELL_STEPS = 4
_ARGUMENT = {"num_inference_steps": "steps", "seed": "seed", "width": "width", "height": "height"}
# The IETF draft header: `"api";r=0;t=55` (newer) or `limit=500, remaining=0, reset=55`.
_RESET = re.compile(r"(?:^|[;,\s])(?:t|reset)=(\d+(?:\.\d+)?)")


class HFInference:
    """The ``hf-inference`` route of the router (used by `HuggingFace`; one request)."""

    rules = RULES

    def __init__(self, api_key: SecretStr, *, model: str, router: httpx.URL, name: str) -> None:
        self.name = name
        self.api_key = api_key
        self.model = model
        self.url = router.copy_with(path=f"{router.path.rstrip('/')}/hf-inference/models/{model}")
        self._default_steps = SCHNELL_STEPS if "schnell" in model.lower() else None
        # The image itself, as huggingface_hub asks for it.
        self._headers = json_headers("Bearer", api_key, accept="image/png")

    def __repr__(self) -> str:
        return f"HFInference(url={str(self.url)!r})"

    def build_request(self, request: GenerateRequest) -> httpx.Request:
        parameters: dict[str, Any] = {}
        steps = request.steps if request.steps is not None else self._default_steps
        if steps is not None:
            parameters["num_inference_steps"] = steps
        for field in ("width", "height", "seed"):
            value = getattr(request, field)
            if value is not None:
                parameters[field] = value
        for key, value in request.extra_body.items():
            if key in _ARGUMENT or key in ("inputs", "parameters"):
                instead = f"use {_ARGUMENT[key]}=..." if key in _ARGUMENT else "leave it out"
                raise InvalidRequestError(
                    f"{self.name}: extra_body[{key!r}] duplicates a field flux_sdk sets; "
                    + instead,
                    provider=self.name,
                )
            parameters[key] = value
        body = to_json({"inputs": request.prompt, "parameters": parameters})
        return httpx.Request("POST", self.url, headers=self._headers, content=body)

    def parse_response(self, request: GenerateRequest, response: httpx.Response) -> GeneratedImage:
        secrets = (self.api_key,)
        if not response.is_success:
            raise hf_error(response, provider=self.name, secrets=secrets)
        return image_from_body(response, provider=self.name, request=request, secrets=secrets)


def hf_error(
    response: httpx.Response, *, provider: str, secrets: Iterable[SecretStr]
) -> ProviderError:
    """The `ProviderError` for a non-2xx answer of the router, quoting its message."""
    secrets = tuple(secrets)
    try:
        raise_for_status(response, provider=provider, secrets=secrets, key_env="HF_TOKEN")
    except ProviderError as exc:
        error = exc
    else:  # pragma: no cover - only called for non-2xx answers
        raise AssertionError(response.status_code)
    status = response.status_code
    detail = _message(response)
    if detail is not None and not 300 <= status < 400:
        rid = request_id(response.headers, secrets)
        message = f"{provider} answered HTTP {status}: {detail}"
        if rid:
            message += f" (request id {rid})"
        error = error_for_status(
            status,
            redact(message, secrets)[:1500],
            provider=provider,
            body=excerpt(response.content, secrets),
            request_id=rid,
            retry_after=retry_after(response.headers),
        )
    if status == 429 and error.retry_after is None:
        error.retry_after = router_reset(response.headers)
    error.message += router_advice(status)
    error.args = (error.message,)
    return error


def _message(response: httpx.Response) -> str | None:
    """The router's message: ``X-Error-Message``, then ``error`` as a string or list."""
    parts: list[str] = []
    header = response.headers.get("x-error-message")
    if header:
        parts.append(header[:300])
    try:
        data = from_json(response.content[:65_536])
    except ValueError:
        data = None
    if isinstance(data, dict):
        error, description = data.get("error"), data.get("error_description")
        if isinstance(error, list):
            parts.extend(str(item)[:300] for item in error[:5])
        elif isinstance(error, str) and error:
            parts.append(f"{error}: {description}" if isinstance(description, str) else error)
        elif isinstance(description, str):
            parts.append(description)
    return "; ".join(parts)[:1000] if parts else None


def router_reset(headers: httpx.Headers) -> float | None:
    """Seconds until the router's rate-limit window resets, from its ``ratelimit`` header."""
    found = _RESET.search(headers.get("ratelimit", ""))
    return float(found[1]) if found else None


def router_advice(status: int) -> str:
    """What to do about a refusal that the router itself makes, whatever the host."""
    if status in (401, 403):
        return (
            "; through the Hugging Face router the key is a Hugging Face token (api_key=... "
            "or HF_TOKEN) with the 'Make calls to Inference Providers' permission"
        )
    if status == 402:
        return (
            "; the Hugging Face account has no Inference Providers credits left: add "
            "credits or a payment method at huggingface.co/settings/billing"
        )
    return ""
