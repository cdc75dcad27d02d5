"""HuggingFace's own hf-inference route, and building the provider: token, checks, repr."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

import flux_sdk
from flux_sdk import (
    AuthenticationError,
    BadRequestError,
    ConfigError,
    FluxError,
    GenerateRequest,
    HuggingFace,
    InvalidRequestError,
    InvalidResponseError,
    QuotaExceeded,
    RateLimitError,
    ServerError,
)

from ._flows import drive
from ._huggingface import BEARER, PNG, ROUTER, SCHNELL, TOKEN, error_of, first, ok

# hf-inference


def test_hf_inference_request_is_exact() -> None:
    """``{"inputs", "parameters"}`` to /hf-inference/models/{model}, schnell's 4 steps."""
    request = first(GenerateRequest(prompt="a red fox", seed=7, width=512, height=768))
    assert (request.method, str(request.url)) == (
        "POST",
        f"{ROUTER}/hf-inference/models/{SCHNELL}",
    )
    assert request.headers["authorization"] == BEARER
    assert request.headers["content-type"] == "application/json"
    assert json.loads(request.content) == {
        "inputs": "a red fox",
        "parameters": {"num_inference_steps": 4, "width": 512, "height": 768, "seed": 7},
    }


@pytest.mark.parametrize(
    ("request_", "model", "parameters"),
    [
        (GenerateRequest(prompt="p"), SCHNELL, {"num_inference_steps": 4}),
        (GenerateRequest(prompt="p", steps=2), SCHNELL, {"num_inference_steps": 2}),
        (GenerateRequest(prompt="p"), "acme/other-model", {}),
        (
            GenerateRequest(prompt="p", extra_body={"guidance_scale": 0, "negative_prompt": "x"}),
            SCHNELL,
            {"num_inference_steps": 4, "guidance_scale": 0, "negative_prompt": "x"},
        ),
    ],
)
def test_hf_inference_parameters(
    request_: GenerateRequest, model: str, parameters: dict[str, Any]
) -> None:
    """Steps default to 4 for schnell only (the pipeline's own is 28); extras join
    ``parameters``."""
    request = first(request_, model=model)
    assert str(request.url) == f"{ROUTER}/hf-inference/models/{model}"
    assert json.loads(request.content) == {"inputs": "p", "parameters": parameters}


@pytest.mark.parametrize("key", ["num_inference_steps", "seed", "width", "inputs", "parameters"])
def test_hf_inference_extra_cannot_duplicate_a_field(key: str) -> None:
    with pytest.raises(InvalidRequestError, match=key) as info:
        first(GenerateRequest(prompt="p", extra_body={key: 1}))
    assert info.value.provider == "huggingface"


def test_hf_inference_answer_is_the_image_bytes() -> None:
    image, seen = drive(HuggingFace(TOKEN), [ok(content=PNG, **{"x-request-id": "r-1"})])
    assert (image.data, image.media_type, image.provider) == (PNG, "image/png", "huggingface")
    assert (image.seed, image.request_id) == (42, "r-1")
    assert len(seen) == 1


@pytest.mark.parametrize(
    ("status", "body", "headers", "kind", "text"),
    [
        (401, {"error": "Invalid credentials in Authorization header"}, {}, AuthenticationError,
         "Invalid credentials"),
        (400, {"error": ["inputs is too long", "seed is negative"]}, {}, BadRequestError,
         "inputs is too long; seed is negative"),
        (400, {"error": "invalid_request", "error_description": "bad size"}, {}, BadRequestError,
         "invalid_request: bad size"),
        (404, b"", {"x-error-message": "Model not found"}, BadRequestError, "Model not found"),
        (402, {"error": "You have exceeded your monthly included credits"}, {}, QuotaExceeded,
         "no Inference Providers credits"),
        (503, {"error": "Service Unavailable"}, {}, ServerError, "Service Unavailable"),
    ],
)  # fmt: skip
def test_hf_inference_errors(
    status: int, body: Any, headers: dict[str, str], kind: type[FluxError], text: str
) -> None:
    """Every error shape the router uses is quoted; 401/402 say what to do."""
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    exc = error_of(HuggingFace(TOKEN), httpx.Response(status, content=content, headers=headers))
    assert type(exc) is kind
    assert text in str(exc)
    assert exc.provider == "huggingface"
    assert exc.retryable is (status == 503)
    if status == 401:
        assert "Hugging Face token" in str(exc)
        assert "HF_TOKEN" in str(exc)


@pytest.mark.parametrize(
    ("headers", "wait"),
    [
        ({"ratelimit": '"api";r=0;t=55'}, 55.0),
        ({"ratelimit": "limit=500, remaining=0, reset=12"}, 12.0),
        ({"ratelimit": '"api";r=0;t=55', "retry-after": "3"}, 3.0),
        ({}, None),
    ],
)
def test_hf_inference_429_waits_for_the_router_window(
    headers: dict[str, str], wait: float | None
) -> None:
    """A 429 without Retry-After waits what the IETF ``ratelimit`` header says."""
    response = httpx.Response(429, json={"error": "rate limited"}, headers=headers)
    exc = error_of(HuggingFace(TOKEN), response)
    assert isinstance(exc, RateLimitError)
    assert (exc.retry_after, exc.retryable) == (wait, True)


def test_hf_inference_json_where_an_image_belongs() -> None:
    exc = error_of(HuggingFace(TOKEN), ok({"error": None}))
    assert isinstance(exc, InvalidResponseError)
    assert exc.retryable


def test_a_token_echoed_back_is_redacted() -> None:
    exc = error_of(HuggingFace(TOKEN), httpx.Response(400, json={"error": f"bad key {TOKEN}"}))
    assert "bad key" in str(exc)


# Construction


def test_key_comes_from_hf_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    assert first().headers["authorization"] == BEARER


def test_missing_key_names_hf_token() -> None:
    with pytest.raises(ConfigError, match="HF_TOKEN"):
        HuggingFace()


@pytest.mark.parametrize(
    ("options", "text"),
    [
        ({"provider": "nebius"}, "hf-inference, together, fal-ai, replicate, nscale"),
        ({"provider": "together", "queue": False}, "does not take queue"),
        ({"queue": True}, "options for it: none"),
        ({"model": "not a model"}, "Hub id"),
        ({"model": "acme/other", "provider": "fal-ai"}, "provider_model=..."),
        ({"base_url": "http://router.example"}, "plain http"),
    ],
)
def test_bad_configuration_is_refused(options: dict[str, Any], text: str) -> None:
    with pytest.raises(ConfigError, match=text.replace(".", r"\.")):
        HuggingFace(TOKEN, **options)


def test_provider_model_replaces_the_known_id() -> None:
    request = first(provider="together", model="acme/other", provider_model="acme/Other-Turbo")
    assert json.loads(request.content)["model"] == "acme/Other-Turbo"


def test_repr_names_the_route_without_the_token() -> None:
    provider = HuggingFace(TOKEN, provider="fal-ai")
    assert repr(provider) == (
        f"HuggingFace(provider='fal-ai', model={SCHNELL!r}, router='{ROUTER}')"
    )
    assert TOKEN not in repr(provider.inner)


def test_registry_builds_it_by_name() -> None:
    made = flux_sdk.provider("huggingface", api_key=TOKEN, provider="replicate", wait=5)
    assert isinstance(made, HuggingFace)
    assert made.name == "huggingface/replicate"
    assert "huggingface" in flux_sdk.provider_names()
