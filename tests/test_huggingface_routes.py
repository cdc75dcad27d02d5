"""Together, nscale, fal and Replicate behind the HuggingFace router: requests and answers."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import pytest

import flux_sdk
from flux_sdk import (
    AuthenticationError,
    GenerateRequest,
    HuggingFace,
    InvalidRequestError,
    InvalidResponseError,
)
from flux_sdk.providers import Accepted, Step, Wait

from ._flows import Item, drive
from ._huggingface import BEARER, PNG, ROUTER, SCHNELL, TOKEN, error_of, first, ok


def sent(seen: list[Item]) -> list[tuple[str, str, str, str | None]]:
    """Each step's kind, method, URL and Authorization header."""
    return [
        (s.kind, s.request.method, str(s.request.url), s.request.headers.get("authorization"))
        for s in seen
        if isinstance(s, Step)
    ]


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
