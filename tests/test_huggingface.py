"""HuggingFace: the exact requests for each provider behind the router, and every answer.

Flows are driven by hand (each Step answered with a canned response), so these tests
are pure; tests/test_huggingface_emulator.py runs whole calls over loopback.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from typing import Any

import httpx
import pytest

import flux_sdk
from flux_sdk import (
    AuthenticationError,
    BadRequestError,
    ConfigError,
    FluxError,
    GeneratedImage,
    GenerateRequest,
    HuggingFace,
    InvalidRequestError,
    InvalidResponseError,
    QuotaExceeded,
    RateLimitError,
    ServerError,
)
from flux_sdk.providers import Accepted, Ended, Step, Wait

from ._images import image_bytes

TOKEN = "hf_SeCrEtToKeN0123456789abcdefABCDEF"
ROUTER = "https://router.huggingface.co"
PNG = image_bytes(size=4)
REQ = GenerateRequest(prompt="a red fox", seed=42)
SCHNELL = "black-forest-labs/FLUX.1-schnell"
Item = Step | Wait | Accepted | Ended


def drive(
    provider: HuggingFace, answers: Iterable[httpx.Response], request: GenerateRequest = REQ
) -> tuple[GeneratedImage, list[Item]]:
    """Run the flow, answering each Step with the next response."""
    flow = provider.generate_flow(request)
    answers = iter(answers)
    seen: list[Item] = []
    value: Any = None
    try:
        while True:
            item = flow.send(value)
            seen.append(item)
            value = None
            if isinstance(item, Step):
                response = next(answers)
                response.request = item.request
                value = item.parse(response)
    except StopIteration as done:
        return done.value, seen


def first(request: GenerateRequest = REQ, **options: Any) -> httpx.Request:
    item = next(HuggingFace(TOKEN, **options).generate_flow(request))
    assert isinstance(item, Step)
    return item.request


def sent(seen: list[Item]) -> list[tuple[str, str, str, str | None]]:
    """Each step's kind, method, URL and Authorization header."""
    return [
        (s.kind, s.request.method, str(s.request.url), s.request.headers.get("authorization"))
        for s in seen
        if isinstance(s, Step)
    ]


def ok(body: Any = None, *, content: bytes | None = None, **headers: str) -> httpx.Response:
    if content is not None:
        return httpx.Response(200, content=content, headers=headers)
    return httpx.Response(200, json=body, headers=headers)


def error_of(provider: HuggingFace, response: httpx.Response) -> FluxError:
    with pytest.raises(FluxError) as info:
        drive(provider, [response])
    assert TOKEN not in str(info.value)
    assert TOKEN not in repr(info.value)
    return info.value


BEARER = f"Bearer {TOKEN}"


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


# Together, nscale: one request on the router's prefix


def test_together_request_is_togethers_own_on_the_router() -> None:
    request = first(provider="together")
    assert (request.method, str(request.url)) == (
        "POST",
        f"{ROUTER}/together/v1/images/generations",
    )
    assert request.headers["authorization"] == BEARER
    assert json.loads(request.content) == {
        "model": SCHNELL,
        "prompt": "a red fox",
        "steps": 4,
        "seed": 42,
        "n": 1,
        "response_format": "base64",
    }


def test_together_answer_and_error_are_labelled_huggingface() -> None:
    provider = HuggingFace(TOKEN, provider="together")
    body = {"data": [{"index": 0, "type": "b64_json", "b64_json": base64.b64encode(PNG).decode()}]}
    image, _ = drive(provider, [ok(body)])
    assert (image.data, image.provider) == (PNG, "huggingface/together")
    exc = error_of(provider, httpx.Response(401, json={"error": "Invalid credentials"}))
    assert isinstance(exc, AuthenticationError)
    assert exc.provider == "huggingface/together"
    assert str(exc).startswith("huggingface/together: ")
    assert "Hugging Face token" in str(exc)


def test_nscale_request_is_openai_style_on_the_router() -> None:
    request = first(GenerateRequest(prompt="p", seed=3, width=512, height=256), provider="nscale")
    assert str(request.url) == f"{ROUTER}/nscale/v1/images/generations"
    assert request.headers["authorization"] == BEARER
    assert json.loads(request.content) == {
        "model": SCHNELL,
        "prompt": "p",
        "n": 1,
        "size": "512x256",
        "response_format": "b64_json",
        "seed": 3,
    }


def test_nscale_refuses_steps_before_sending() -> None:
    """The router's nscale route drops steps; flux_sdk refuses them instead."""
    with pytest.raises(InvalidRequestError, match="no steps") as info:
        first(GenerateRequest(prompt="p", steps=4), provider="nscale")
    assert info.value.provider == "huggingface/nscale"
    assert str(info.value).startswith("huggingface/nscale: ")


# fal: the queue through the router

RID = "80e732af-1111-4222-8333-944445555666"
FAL_JOB_URL = f"https://queue.fal.run/fal-ai/flux/requests/{RID}"
ROUTED_JOB = f"{ROUTER}/fal-ai/fal-ai/flux/requests/{RID}"
CDN = "https://v3.fal.media/files/rabbit/a1b2c3.png"
JOB = {
    "status": "IN_QUEUE",
    "request_id": RID,
    "response_url": FAL_JOB_URL,
    "status_url": f"{FAL_JOB_URL}/status",
    "cancel_url": f"{FAL_JOB_URL}/cancel",
}
RESULT = {"images": [{"url": CDN}], "seed": 42, "has_nsfw_concepts": [False]}


def test_fal_queue_life_goes_through_the_router() -> None:
    """Submit, polls and result are fal's requests moved under /fal-ai with
    ``?_subdomain=queue`` and the token as Bearer; the CDN download is left alone."""
    provider = HuggingFace(TOKEN, provider="fal-ai")
    answers = [
        ok(JOB),
        ok({**JOB, "status": "IN_PROGRESS"}),
        ok({**JOB, "status": "COMPLETED"}),
        ok(RESULT),
        ok(content=PNG),
    ]
    image, seen = drive(provider, answers)
    assert (image.data, image.seed, image.provider) == (PNG, 42, "huggingface/fal-ai")
    assert image.request_id == RID
    queue = "?_subdomain=queue"
    assert sent(seen) == [
        ("submit", "POST", f"{ROUTER}/fal-ai/fal-ai/flux/schnell{queue}", BEARER),
        ("poll", "GET", f"{ROUTED_JOB}/status{queue}", BEARER),
        ("poll", "GET", f"{ROUTED_JOB}/status{queue}", BEARER),
        ("poll", "GET", f"{ROUTED_JOB}{queue}", BEARER),
        ("download", "GET", CDN, None),
    ]
    submit = next(s for s in seen if isinstance(s, Step)).request
    assert json.loads(submit.content) == {
        "prompt": "a red fox",
        "image_size": {"width": 1024, "height": 1024},
        "seed": 42,
        "num_images": 1,
    }
    (accepted,) = [s for s in seen if isinstance(s, Accepted)]
    assert accepted.job_id == RID
    assert accepted.cancel is not None
    cancel = accepted.cancel
    assert (cancel.method, str(cancel.url)) == ("PUT", f"{ROUTED_JOB}/cancel{queue}")
    assert cancel.headers["authorization"] == BEARER
    assert [type(s) for s in seen].count(Wait) == 2


def test_fal_sync_posts_to_the_router_without_the_queue() -> None:
    provider = HuggingFace(TOKEN, provider="fal-ai", queue=False, output_format="png")
    image, seen = drive(provider, [ok(RESULT), ok(content=PNG)])
    assert image.data == PNG
    assert sent(seen) == [
        ("generate", "POST", f"{ROUTER}/fal-ai/fal-ai/flux/schnell", BEARER),
        ("download", "GET", CDN, None),
    ]
    assert json.loads(seen[0].request.content)["output_format"] == "png"  # type: ignore[union-attr]


def test_fal_job_urls_off_fals_own_host_are_refused() -> None:
    """fal's follow-up URLs must be on queue.fal.run (where they are moved from)."""
    job = {**JOB, "status_url": "https://elsewhere.example/status"}
    exc = error_of(HuggingFace(TOKEN, provider="fal-ai"), ok(job))
    assert isinstance(exc, InvalidResponseError)
    assert not exc.retryable
    assert exc.provider == "huggingface/fal-ai"


def test_fal_rules_and_checks_are_fals() -> None:
    provider = HuggingFace(TOKEN, provider="fal-ai")
    with pytest.raises(
        InvalidRequestError, match=r"huggingface/fal-ai needs steps between 1 and 12"
    ):
        provider.rules.check(GenerateRequest(prompt="p", steps=13), provider.name)
    with pytest.raises(InvalidRequestError, match="num_images") as info:
        first(GenerateRequest(prompt="p", extra_body={"num_images": 2}), provider="fal-ai")
    assert info.value.provider == "huggingface/fal-ai"


# Replicate: a prediction through the router

PID = "abc123xyz"
REPLICATE_URL = f"https://api.replicate.com/v1/predictions/{PID}"
OUT = "https://replicate.delivery/xezq/out-0.webp"


def prediction(status: str, output: Any = None) -> dict[str, Any]:
    urls = {"get": REPLICATE_URL, "cancel": f"{REPLICATE_URL}/cancel"}
    return {"id": PID, "status": status, "output": output, "error": None, "urls": urls}


def test_replicate_prediction_goes_through_the_router() -> None:
    provider = HuggingFace(TOKEN, provider="replicate")
    request = GenerateRequest(prompt="p", seed=5, width=1344, height=768)
    answers = [ok(prediction("starting")), ok(prediction("succeeded", [OUT])), ok(content=PNG)]
    image, seen = drive(provider, answers, request)
    assert (image.data, image.provider, image.request_id) == (PNG, "huggingface/replicate", PID)
    routed = f"{ROUTER}/replicate/v1/predictions/{PID}"
    assert sent(seen) == [
        (
            "submit",
            "POST",
            f"{ROUTER}/replicate/v1/models/black-forest-labs/flux-schnell/predictions",
            BEARER,
        ),
        ("poll", "GET", routed, BEARER),
        ("download", "GET", OUT, None),
    ]
    create = seen[0].request  # type: ignore[union-attr]
    assert create.headers["prefer"] == "wait=60"
    assert json.loads(create.content) == {
        "input": {
            "prompt": "p",
            "num_outputs": 1,
            "aspect_ratio": "16:9",
            "seed": 5,
            "go_fast": False,
        }
    }
    (accepted,) = [s for s in seen if isinstance(s, Accepted)]
    assert accepted.cancel is not None
    assert (accepted.cancel.method, str(accepted.cancel.url)) == ("POST", f"{routed}/cancel")
    assert accepted.cancel.headers["authorization"] == BEARER


def test_replicate_failure_is_labelled() -> None:
    failed = {**prediction("failed"), "error": "NSFW"}
    with pytest.raises(flux_sdk.ProviderError, match=r"^huggingface/replicate: .*NSFW") as info:
        drive(HuggingFace(TOKEN, provider="replicate"), [ok(failed)])
    assert info.value.provider == "huggingface/replicate"


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
