"""Replicate's create request: its exact shape, every input rule, and its settings."""

from __future__ import annotations

import json
import warnings
from typing import Any

import httpx
import pytest
import respx

from flux_sdk import (
    ConfigError,
    FluxClient,
    FluxWarning,
    GenerateRequest,
    InvalidRequestError,
    Replicate,
    provider,
)
from flux_sdk.providers._replicate_inputs import ASPECT_RATIOS

from ._replicate import CREATE, KEY, prediction

pytestmark = pytest.mark.anyio


def flow_request(request: GenerateRequest, **options: Any) -> httpx.Request:
    """The create request the flow yields first (nothing is sent)."""
    flow = Replicate(KEY, **options).generate_flow(request)
    step = next(flow)
    flow.close()
    return step.request  # type: ignore[union-attr]


def body_of(**fields: Any) -> dict[str, Any]:
    return dict(json.loads(flow_request(GenerateRequest(prompt="a fox", **fields)).content))


# The request


def test_create_request_method_url_headers_and_default_body() -> None:
    """POST to the model's predictions URL, Bearer token, Prefer: wait=60, one image."""
    request = flow_request(GenerateRequest(prompt="a fox"))
    assert (request.method, str(request.url)) == ("POST", CREATE)
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["prefer"] == "wait=60"
    assert json.loads(request.content) == {"input": {"prompt": "a fox", "num_outputs": 1}}


def test_wait_none_sends_no_prefer_and_wait_n_sends_it() -> None:
    assert "prefer" not in flow_request(GenerateRequest(prompt="a"), wait=None).headers
    assert flow_request(GenerateRequest(prompt="a"), wait=5).headers["prefer"] == "wait=5"


def test_a_seed_turns_go_fast_off_so_it_reproduces() -> None:
    """go_fast (fp8) is not deterministic even with a seed: a seeded call sends false."""
    assert body_of(seed=42, steps=2)["input"] == {
        "prompt": "a fox",
        "num_outputs": 1,
        "num_inference_steps": 2,
        "seed": 42,
        "go_fast": False,
    }
    assert "go_fast" not in body_of()["input"]
    assert body_of(seed=42, extra_body={"go_fast": True})["input"]["go_fast"] is True


@pytest.mark.parametrize(("ratio", "size"), list(ASPECT_RATIOS.items()))
def test_each_exact_size_is_sent_as_its_aspect_ratio(ratio: str, size: tuple[int, int]) -> None:
    data = body_of(width=size[0], height=size[1])["input"]
    assert data["aspect_ratio"] == ratio
    assert "width" not in data
    assert "height" not in data


def test_quarter_megapixel_sizes_are_halved() -> None:
    data = body_of(width=672, height=384, extra_body={"megapixels": "0.25"})["input"]
    assert (data["aspect_ratio"], data["megapixels"]) == ("16:9", "0.25")


@pytest.mark.parametrize(
    "extra",
    [
        {"output_format": "png"},
        {"output_format": "jpg", "output_quality": 90},
        {"aspect_ratio": "9:16"},
        {"disable_safety_checker": True},
    ],
)
def test_extra_body_inputs_pass_through(extra: dict[str, Any]) -> None:
    assert body_of(extra_body=extra)["input"] == {"prompt": "a fox", "num_outputs": 1, **extra}


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"width": 1000, "height": 1000}, r"only these sizes .*1024x1024 \(1:1\).*got 1000x1000"),
        ({"width": 1024}, "needs both width and height"),
        ({"width": 1024, "height": 1024, "extra_body": {"aspect_ratio": "1:1"}}, "not both"),
        ({"steps": 5}, "steps between 1 and 4"),
        ({"extra_body": {"num_inference_steps": 2}}, "use the steps=... argument"),
        ({"extra_body": {"width": 512}}, "duplicates"),
        ({"extra_body": {"num_outputs": 2}}, "one image per call"),
        ({"extra_body": {"output_format": "gif"}}, "webp, jpg, png"),
        ({"extra_body": {"aspect_ratio": "7:5"}}, "aspect_ratio"),
        ({"extra_body": {"megapixels": "2"}}, "megapixels"),
    ],
)
async def test_requests_the_model_cannot_serve_fail_before_sending(
    fields: dict[str, Any], match: str
) -> None:
    """Checked by the client before any request: the error names the host and the rule."""
    with respx.mock(assert_all_called=False) as router:
        route = router.post(CREATE).respond(201, json=prediction("starting"))
        async with FluxClient(Replicate(KEY)) as flux:
            with pytest.raises(InvalidRequestError, match=match) as caught:
                await flux.generate("a fox", **fields)
    assert route.call_count == 0
    assert caught.value.provider == "replicate"


def test_seed_zero_is_sent_with_a_warning() -> None:
    """Replicate's model treats 0 as 'random'; the user is told how to reproduce."""
    with pytest.warns(FluxWarning, match="seed from 1 up"):
        assert body_of(seed=0)["input"]["seed"] == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        body_of(seed=1)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"model": "flux-schnell"}, "owner/name"),
        ({"model": "black-forest-labs/flux-schnell:abc"}, "owner/name"),
        ({"wait": 61}, "1 to 60"),
        ({"wait": True}, "whole seconds"),
        ({"poll_interval": 0}, "poll_interval"),
        ({"base_url": "http://api.replicate.com"}, "https"),
    ],
)
def test_bad_settings_are_config_errors(options: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        Replicate(KEY, **options)


def test_the_token_comes_from_the_environment_and_stays_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(ConfigError, match="REPLICATE_API_TOKEN"):
        Replicate()
    monkeypatch.setenv("REPLICATE_API_TOKEN", KEY)
    made = provider("replicate")
    assert isinstance(made, Replicate)
    assert KEY not in repr(made)
