"""Cloudflare Workers AI: the exact request, what its schema refuses before sending, every
answer and error code decoded, and the same against the emulator over loopback."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import pytest
import respx

from flux_sdk import (
    AuthenticationError,
    BadRequestError,
    CloudflareWorkersAI,
    ConfigError,
    FluxClient,
    FluxError,
    GenerateRequest,
    InvalidRequestError,
    InvalidResponseError,
    ProviderError,
    QuotaExceeded,
    RateLimitError,
    Retry,
    provider,
)
from flux_sdk.emulator import DEFAULT_API_KEY, EmulatorApp, Fault, FaultPlan, render_png

from ._images import image_bytes, noise_png
from ._server import serve

pytestmark = pytest.mark.anyio

KEY = "cf_SeCrEt-token-8d7c6b5a4f3e"
ACCOUNT = "0123456789abcdef0123456789abcdef"
URL = (
    f"https://api.cloudflare.com/client/v4/accounts/{ACCOUNT}/ai/run/"
    "@cf/black-forest-labs/flux-1-schnell"
)
JPEG = image_bytes("JPEG", size=4)
REQ = GenerateRequest(prompt="a lighthouse")


def cloudflare(**options: Any) -> CloudflareWorkersAI:
    return CloudflareWorkersAI(KEY, ACCOUNT, **options)


def envelope(image: str | None = None, *, success: bool = True, errors: Any = ()) -> dict[str, Any]:
    result = None if image is None else {"image": image}
    return {"result": result, "success": success, "errors": list(errors), "messages": []}


def failure(code: int, message: str) -> dict[str, Any]:
    return envelope(success=False, errors=[{"code": code, "message": message}])


def parse(status: int, body: Any, content_type: str = "application/json") -> Any:
    content = json.dumps(body).encode() if isinstance(body, dict) else body
    response = httpx.Response(status, content=content, headers={"content-type": content_type})
    return cloudflare().parse_response(REQ, response)


# The request


@pytest.mark.parametrize(
    ("fields", "body"),
    [
        ({}, {"prompt": "a lighthouse"}),
        ({"steps": 8}, {"prompt": "a lighthouse", "steps": 8}),
    ],
)
def test_request_method_url_headers_and_body(fields: dict[str, Any], body: dict[str, Any]) -> None:
    request = cloudflare().build_request(GenerateRequest(prompt="a lighthouse", **fields))
    assert (request.method, str(request.url)) == ("POST", URL)
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.headers["content-type"] == "application/json"
    assert json.loads(request.content) == body


def test_other_models_take_seed_size_num_steps_and_extra_body() -> None:
    sdxl = cloudflare(model="@cf/stabilityai/stable-diffusion-xl-base-1.0")
    request = sdxl.build_request(
        GenerateRequest(
            prompt="a", seed=5, steps=20, width=512, height=768, extra_body={"guidance": 7.5}
        )
    )
    assert str(request.url).endswith("/ai/run/@cf/stabilityai/stable-diffusion-xl-base-1.0")
    assert json.loads(request.content) == {
        "prompt": "a",
        "num_steps": 20,
        "seed": 5,
        "width": 512,
        "height": 768,
        "guidance": 7.5,
    }


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"seed": 1}, "does not accept a seed"),
        ({"width": 512}, "does not accept width"),
        ({"steps": 9}, "steps between 1 and 8"),
        ({"extra_body": {"guidance": 3}}, "takes only a prompt and steps"),
        ({"extra_body": {"steps": 3}}, "duplicates"),
    ],
)
async def test_what_the_schema_refuses_fails_before_sending(
    fields: dict[str, Any], match: str
) -> None:
    """No seed, no size, no extra property: an error naming the host, nothing sent."""
    with respx.mock(assert_all_called=False) as router:
        route = router.post(URL).respond(200, json=envelope("AAAA"))
        async with FluxClient(cloudflare()) as flux:
            with pytest.raises(InvalidRequestError, match=match) as caught:
                await flux.generate("a lighthouse", **fields)
    assert route.call_count == 0
    assert "cloudflare" in str(caught.value)


def test_a_prompt_over_2048_characters_is_refused() -> None:
    with pytest.raises(InvalidRequestError, match="1 to 2048 characters"):
        cloudflare().rules.check(GenerateRequest(prompt="x" * 2049), "cloudflare")


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ({"api_key": None, "account_id": ACCOUNT}, "CLOUDFLARE_API_TOKEN"),
        ({"api_key": KEY, "account_id": None}, "CLOUDFLARE_ACCOUNT_ID"),
        ({"api_key": KEY, "account_id": "../x"}, "not a valid id"),
        ({"api_key": KEY, "account_id": ACCOUNT, "model": "@cf/../../x"}, "model name"),
    ],
)
def test_bad_settings_are_config_errors(args: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        CloudflareWorkersAI(**args)


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLOUDFLARE_API_TOKEN", KEY)
    monkeypatch.setenv("CLOUDFLARE_ACCOUNT_ID", ACCOUNT)
    made = provider("cloudflare")
    assert isinstance(made, CloudflareWorkersAI)
    assert str(made.url) == URL
    assert KEY not in repr(made)


# The answers


def test_result_image_is_decoded() -> None:
    image = parse(200, envelope(base64.b64encode(JPEG).decode()))
    assert (image.data, image.media_type) == (JPEG, "image/jpeg")


def test_a_large_image_reads_the_same_as_the_full_parse() -> None:
    """Over 64 KiB the image is decoded in place from the body; it must be the image a
    full parse finds, and a failure the envelope reports is still that failure."""
    big = noise_png(160)
    text = base64.b64encode(big).decode()
    assert len(text) > 64 * 1024
    assert parse(200, envelope(text)).data == big
    decoy = b'{"image": "QUJD", "result": {"image": "%s"}, "success": true}' % text.encode()
    assert parse(200, decoy).data == big
    refused = envelope(text, success=False, errors=[{"code": 3040, "message": "no capacity"}])
    with pytest.raises(ProviderError, match="no capacity"):
        parse(200, refused)


def test_raw_image_bytes_are_read_for_other_models() -> None:
    image = parse(200, JPEG, "image/jpeg")
    assert image.data == JPEG


def test_image_bytes_labelled_json_are_read_as_the_image() -> None:
    """A gateway that labels the image itself application/json (or drops the type) does
    not turn a paid image into an 'invalid JSON' failure that is retried and paid again."""
    assert parse(200, JPEG, "application/json").data == JPEG
    assert parse(200, JPEG, "").data == JPEG


@pytest.mark.parametrize(
    ("status", "body", "error", "retryable", "match"),
    [
        (401, failure(10000, "Authentication error"), AuthenticationError, False, "Authentication"),
        (400, failure(5007, "No such model"), BadRequestError, False, "No such model"),
        (408, failure(3007, "Request timeout"), BadRequestError, True, "timeout"),
        (408, failure(3008, "Request aborted"), BadRequestError, True, "aborted"),
        (429, failure(3040, "Out of capacity"), RateLimitError, True, "capacity"),
        (429, failure(3036, "daily free allocation used"), QuotaExceeded, False, "00:00 UTC"),
        (200, failure(3040, "Out of capacity"), ProviderError, True, "reported a failure"),
        (200, failure(5006, "Bad input"), ProviderError, False, "Bad input"),
        (200, envelope(), InvalidResponseError, True, "without result.image"),
        (200, envelope("not base64!"), InvalidResponseError, True, "not valid base64"),
        (200, b"<html>oops", InvalidResponseError, True, "invalid JSON"),
    ],
)
def test_every_error_variant_is_decoded(
    status: int, body: Any, error: type[FluxError], retryable: bool, match: str
) -> None:
    with pytest.raises(error, match=match) as caught:
        parse(status, body)
    assert caught.value.retryable is retryable
    assert type(caught.value) is error or error is ProviderError


def test_the_token_never_reaches_an_error() -> None:
    with pytest.raises(ProviderError) as caught:
        parse(200, failure(5006, f"bad token {KEY}"))
    assert KEY not in str(caught.value)
    assert KEY not in getattr(caught.value, "body", "")


# Against the emulator, over loopback


async def test_an_image_over_loopback() -> None:
    with serve(EmulatorApp()) as url:
        provider = CloudflareWorkersAI(DEFAULT_API_KEY, ACCOUNT, base_url=f"{url}/client/v4")
        async with FluxClient(provider) as flux:
            image = await flux.generate("a lighthouse", steps=3)
    assert image.data == render_png("a lighthouse", seed=None, steps=3, width=1024, height=1024)
    assert image.request_id is not None
    assert image.request_id.startswith("emu-")


async def test_capacity_is_retried_and_the_daily_quota_is_not() -> None:
    app = EmulatorApp(
        faults=FaultPlan([Fault.RATE_LIMIT], retry_after=0), cloudflare_daily_images=1
    )
    with serve(app) as url:
        provider = CloudflareWorkersAI(DEFAULT_API_KEY, ACCOUNT, base_url=f"{url}/client/v4")
        async with FluxClient(provider, max_retries=Retry(3, sleep=_no_sleep)) as flux:
            await flux.generate("a lighthouse")  # 3040 first, then the image
            with pytest.raises(RateLimitError, match="00:00 UTC") as caught:
                await flux.generate("a lighthouse")
    assert caught.value.attempts == 1
    assert app.requests_seen == 3


async def test_the_emulator_refuses_what_the_schema_refuses() -> None:
    """Sent without the SDK's checks: the emulator answers Workers AI's codes."""
    with serve(EmulatorApp()) as url:
        base = f"{url}/client/v4/accounts/{ACCOUNT}/ai/run/"
        auth = {"authorization": f"Bearer {DEFAULT_API_KEY}"}
        async with httpx.AsyncClient() as http:
            extra = await http.post(
                base + "@cf/black-forest-labs/flux-1-schnell",
                headers=auth,
                json={"prompt": "a", "seed": 1},
            )
            model = await http.post(base + "@cf/nobody/nothing", headers=auth, json={"prompt": "a"})
            token = await http.post(
                base + "@cf/black-forest-labs/flux-1-schnell", json={"prompt": "a"}
            )
    assert (extra.status_code, extra.json()["errors"][0]["code"]) == (400, 5006)
    assert "seed" in extra.json()["errors"][0]["message"]
    assert (model.status_code, model.json()["errors"][0]["code"]) == (400, 5007)
    assert (token.status_code, token.json()["errors"][0]["code"]) == (401, 10000)


async def _no_sleep(seconds: float) -> None:
    return None
