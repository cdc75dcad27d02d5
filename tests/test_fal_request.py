"""The fal adapter's requests: the submit, its rules and settings, and the image download."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

import flux_sdk
from flux_sdk import ConfigError, Fal, GenerateRequest, InvalidRequestError, InvalidResponseError
from flux_sdk.providers import Step

from ._fal import CDN, KEY, PNG, RESULT, SUBMIT
from ._flows import REQ


def first(request: GenerateRequest = REQ, **options: Any) -> httpx.Request:
    item = next(Fal(KEY, **options).generate_flow(request))
    assert isinstance(item, Step)
    return item.request


def body_of(request: GenerateRequest, **options: Any) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(first(request, **options).content)
    return loaded


# The request


def test_submit_is_a_keyed_post_to_the_queue() -> None:
    """Queue mode posts JSON to queue.fal.run/{model} with ``Authorization: Key``."""
    request = first()
    assert (request.method, str(request.url)) == ("POST", SUBMIT)
    assert request.headers["authorization"] == f"Key {KEY}"
    assert request.headers["content-type"] == "application/json"


@pytest.mark.parametrize(
    ("options", "url"),
    [
        ({"queue": False}, "https://fal.run/fal-ai/flux/schnell"),
        ({"model": "fal-ai/flux-1/schnell"}, "https://queue.fal.run/fal-ai/flux-1/schnell"),
        ({"base_url": "http://127.0.0.1:8787"}, "http://127.0.0.1:8787/fal-ai/flux/schnell"),
        (
            {"queue": False, "base_url": "https://proxy.example/fal/"},
            "https://proxy.example/fal/fal-ai/flux/schnell",
        ),
    ],
)
def test_urls(options: dict[str, Any], url: str) -> None:
    """The mode picks the host (fal.run or queue.fal.run); base_url replaces it."""
    assert str(first(**options).url) == url


def test_env_vars_supply_key_and_base_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAL_KEY", KEY)
    monkeypatch.setenv("FAL_BASE_URL", "http://localhost:9000")
    request = next(Fal().generate_flow(REQ)).request  # type: ignore[union-attr]
    assert str(request.url) == "http://localhost:9000/fal-ai/flux/schnell"
    assert request.headers["authorization"] == f"Key {KEY}"


_SQUARE = {"width": 1024, "height": 1024}


@pytest.mark.parametrize(
    ("fields", "options", "expected"),
    [
        ({}, {}, {"image_size": _SQUARE}),
        ({"steps": 1, "seed": 0}, {}, {"image_size": _SQUARE, "num_inference_steps": 1, "seed": 0}),
        ({"steps": 12, "seed": 2**63 - 1}, {}, {"num_inference_steps": 12, "seed": 2**63 - 1}),
        ({"width": 768, "height": 1344}, {}, {"image_size": {"width": 768, "height": 1344}}),
        ({"width": 512}, {}, {"image_size": {"width": 512, "height": 1024}}),
        ({"height": 576}, {}, {"image_size": {"width": 1024, "height": 576}}),
        ({"extra_body": {"image_size": "landscape_4_3"}}, {}, {"image_size": "landscape_4_3"}),
        ({}, {"output_format": "png"}, {"image_size": _SQUARE, "output_format": "png"}),
        ({"extra_body": {"output_format": "jpeg"}}, {}, {"output_format": "jpeg"}),
        ({"extra_body": {"sync_mode": True, "num_images": 1}}, {}, {"sync_mode": True}),
        (
            {"extra_body": {"enable_safety_checker": False, "acceleration": "high"}},
            {},
            {"enable_safety_checker": False, "acceleration": "high"},
        ),
    ],
)
def test_body_is_exact(
    fields: dict[str, Any], options: dict[str, Any], expected: dict[str, Any]
) -> None:
    """Each documented field as fal names it; a square 1024 unless a size is given."""
    body = body_of(GenerateRequest(prompt="a red fox", **fields), **options)
    assert body == {"prompt": "a red fox", "num_images": 1, "image_size": _SQUARE, **expected}
    assert first(GenerateRequest(prompt="a red fox", **fields), queue=False).content == (
        first(GenerateRequest(prompt="a red fox", **fields)).content
    )


@pytest.mark.parametrize(
    ("fields", "ok"),
    [
        ({"steps": 12}, True),
        ({"steps": 13}, False),
        ({"width": 8192, "height": 1}, True),
        ({"extra_body": {"image_size": {"width": 14142, "height": 1}}}, True),
        ({"extra_body": {"image_size": {"width": 14143, "height": 1}}}, False),
    ],
)
def test_rules(fields: dict[str, Any], ok: bool) -> None:
    """Steps 1..12 and sides up to 14142 (flux_sdk's width and height stop at 8192),
    checked before sending, naming fal."""
    request = GenerateRequest(prompt="x", **fields)

    def check() -> None:
        Fal.rules.check(request, "fal")  # what the client checks before the flow starts
        first(request)

    if ok:
        check()
    else:
        with pytest.raises(InvalidRequestError, match="fal"):
            check()


@pytest.mark.parametrize(
    ("extra", "fields", "options", "match"),
    [
        ({"num_inference_steps": 4}, {}, {}, r"use steps="),
        ({"seed": 1}, {}, {}, r"use seed="),
        ({"prompt": "x"}, {}, {}, r"use prompt="),
        ({"num_images": 4}, {}, {}, r"one image per call"),
        ({"image_size": "square_hd"}, {"width": 512}, {}, r"not both"),
        ({"image_size": "huge"}, {}, {}, r"image_size must be one of square_hd"),
        ({"image_size": {"width": 0, "height": 5}}, {}, {}, r"width must be an integer"),
        ({"image_size": {"width": 5}}, {}, {}, r"preset name or"),
        ({"output_format": "webp"}, {}, {}, r"output_format must be one of jpeg, png"),
        ({"output_format": "png"}, {}, {"output_format": "png"}, r"set on Fal"),
        ({"sync_mode": "yes"}, {}, {}, r"sync_mode must be true or false"),
        ({"guidance_scale": 25}, {}, {}, r"guidance_scale must be a number from 1 to 20"),
        ({"acceleration": "max"}, {}, {}, r"acceleration must be one of"),
    ],
)
def test_extra_body_fal_would_refuse_fails_before_sending(
    extra: dict[str, Any], fields: dict[str, Any], options: dict[str, Any], match: str
) -> None:
    request = GenerateRequest(prompt="x", extra_body=extra, **fields)
    with pytest.raises(InvalidRequestError, match=match) as caught:
        first(request, **options)
    assert caught.value.provider == "fal"


@pytest.mark.parametrize("key", [None, "", "  "])
def test_missing_key_names_the_env_var(key: str | None) -> None:
    with pytest.raises(ConfigError, match="FAL_KEY"):
        Fal(key)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"model": "schnell"}, "not an endpoint id"),
        ({"model": "fal-ai/../admin"}, "not an endpoint id"),
        ({"model": "fal-ai/flux schnell"}, "not an endpoint id"),
        ({"output_format": "webp"}, "'jpeg' or 'png'"),
        ({"base_url": "http://fal.example"}, "plain http"),
        ({"base_url": "https://fal.example/?x=1"}, "query string"),
    ],
)
def test_bad_options_are_refused(options: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        Fal(KEY, **options)


def test_the_key_is_in_no_repr() -> None:
    provider = Fal(KEY)
    assert KEY not in repr(provider)
    assert "Key" not in repr(provider)
    assert repr(provider) == "Fal(url='https://queue.fal.run/fal-ai/flux/schnell', mode='queue')"


def test_the_registry_knows_fal() -> None:
    assert "fal" in flux_sdk.provider_names()
    made = flux_sdk.provider("fal", api_key=KEY, queue=False)
    assert isinstance(made, Fal)
    assert not made.queue


# Through the client: the download follows the same rules as every request


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("url", "fetched"),
    [
        (CDN, True),
        ("https://10.1.2.3/files/a.png", False),
        ("http://v3.fal.media/files/a.png", False),
    ],
)
async def test_the_image_is_fetched_only_from_a_public_https_url_without_the_key(
    url: str, fetched: bool
) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.host == "fal.run":
            return httpx.Response(200, json={**RESULT, "images": [{"url": url}]})
        return httpx.Response(200, content=PNG)

    async def no_wait(seconds: float) -> None:
        pass

    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    retry = flux_sdk.Retry(2, sleep=no_wait)
    async with (
        http,
        flux_sdk.FluxClient(Fal(KEY, queue=False), http_client=http, max_retries=retry) as client,
    ):
        if fetched:
            assert (await client.generate("a red fox")).data == PNG
        else:
            with pytest.raises(InvalidResponseError, match="will not fetch"):
                await client.generate("a red fox")
    assert len(seen) == (2 if fetched else 1)
    assert "authorization" not in seen[-1].headers or seen[-1].url.host == "fal.run"


def test_the_cli_chooses_fal(monkeypatch: pytest.MonkeyPatch) -> None:
    """--provider fal, and auto when FAL_KEY is the only key set."""
    import argparse

    from flux_sdk.cli._providers import choose_provider

    monkeypatch.setenv("FAL_KEY", KEY)
    for name in ("fal", "auto"):
        args = argparse.Namespace(provider=name, base_url="http://127.0.0.1:8787", model_id=None)
        chosen = choose_provider(args).provider
        assert isinstance(chosen, Fal)
        assert str(chosen.url) == "http://127.0.0.1:8787/fal-ai/flux/schnell"
