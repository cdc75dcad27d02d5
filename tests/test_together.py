"""The Together adapter: its configuration, the exact request for every parameter the docs
table lists, its rules, and the whole stack against the emulator over loopback."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

import flux_sdk
from flux_sdk import (
    AuthenticationError,
    ConfigError,
    FluxClient,
    GenerateRequest,
    InvalidRequestError,
    InvalidResponseError,
    RateLimitError,
    Retry,
    Together,
)
from flux_sdk.emulator import DEFAULT_API_KEY, EmulatorApp, Fault, FaultPlan, render_png

from ._server import serve
from ._sleeps import Sleeps

KEY = "tg_SeCrEt.5c4b3a2918f7e6d5"
URL = "https://api.together.ai/v1/images/generations"
SCHNELL = "black-forest-labs/FLUX.1-schnell"


def build(request: GenerateRequest, **kwargs: Any) -> httpx.Request:
    return Together(KEY, **kwargs).build_request(request)


# Configuration


def test_request_method_url_and_headers() -> None:
    """A POST to Together's images endpoint with a Bearer key and a JSON body."""
    req = build(GenerateRequest(prompt="a fox"))
    assert req.method == "POST"
    assert str(req.url) == URL
    assert req.headers["authorization"] == f"Bearer {KEY}"
    assert req.headers["content-type"] == "application/json"
    assert req.headers["accept"] == "application/json"


@pytest.mark.parametrize(
    ("base_url", "url"),
    [
        ("https://api.together.xyz", "https://api.together.xyz/v1/images/generations"),
        ("https://api.together.ai/", URL),
        (
            "https://router.huggingface.co/together",
            "https://router.huggingface.co/together/v1/images/generations",
        ),
        ("http://127.0.0.1:8787/together", "http://127.0.0.1:8787/together/v1/images/generations"),
    ],
)
def test_base_url_as_the_official_client_takes_it(base_url: str, url: str) -> None:
    """The base has no /v1, as `together.Together(base_url=...)` takes it: the same
    TOGETHER_BASE_URL reaches the same path from both."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert str(build(GenerateRequest(prompt="a fox"), base_url=base_url).url) == url


@pytest.mark.parametrize(
    ("base_url", "url"),
    [
        ("https://api.together.xyz/v1", "https://api.together.xyz/v1/images/generations"),
        ("https://api.together.ai/v1/", URL),
        (
            "http://127.0.0.1:8787/together/v1",
            "http://127.0.0.1:8787/together/v1/images/generations",
        ),
    ],
)
def test_the_old_base_with_v1_still_works_with_a_deprecation_warning(
    base_url: str, url: str
) -> None:
    with pytest.warns(DeprecationWarning, match="without /v1"):
        built = build(GenerateRequest(prompt="a fox"), base_url=base_url)
    assert str(built.url) == url


def test_env_vars_supply_key_and_base_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOGETHER_API_KEY", KEY)
    monkeypatch.setenv("TOGETHER_BASE_URL", "https://api.together.xyz")
    req = Together().build_request(GenerateRequest(prompt="a fox"))
    assert req.headers["authorization"] == f"Bearer {KEY}"
    assert str(req.url) == "https://api.together.xyz/v1/images/generations"


@pytest.mark.parametrize("key", [None, "", "   "])
def test_missing_key_names_the_env_var(key: str | None) -> None:
    with pytest.raises(ConfigError, match="TOGETHER_API_KEY"):
        Together(key)


@pytest.mark.parametrize(
    "url", ["http://api.together.ai", "ftp://x", "https://u:p@api.together.ai", "https://a/?q=1"]
)
def test_unsafe_base_url_is_refused(url: str) -> None:
    with pytest.raises(ConfigError, match="Together base URL"):
        Together(KEY, base_url=url)


@pytest.mark.parametrize("model", ["", "  ", None])
def test_blank_model_is_refused(model: Any) -> None:
    with pytest.raises(ConfigError, match="model"):
        Together(KEY, model=model)


def test_repr_has_no_key() -> None:
    text = repr(Together(KEY))
    assert KEY not in text
    assert "api.together.ai" in text


def test_registry_and_top_level_export() -> None:
    made = flux_sdk.provider("together", api_key=KEY)
    assert isinstance(made, Together)
    assert made.name == "together"
    assert "together" in flux_sdk.provider_names()


# The exact body, for each row of the docs table


@pytest.mark.parametrize(
    ("fields", "body"),
    [
        pytest.param(
            {"prompt": "a fox"},
            b'{"model":"black-forest-labs/FLUX.1-schnell","prompt":"a fox","steps":4,'
            b'"n":1,"response_format":"base64"}',
            id="defaults-send-steps-4",
        ),
        pytest.param(
            {"prompt": "a fox", "steps": 1, "seed": 0, "width": 64, "height": 64},
            b'{"model":"black-forest-labs/FLUX.1-schnell","prompt":"a fox","steps":1,"seed":0,'
            b'"width":64,"height":64,"n":1,"response_format":"base64"}',
            id="minimums",
        ),
        pytest.param(
            {"prompt": "a fox", "steps": 50, "seed": 2**63 - 1, "width": 2048, "height": 2048},
            b'{"model":"black-forest-labs/FLUX.1-schnell","prompt":"a fox","steps":50,'
            b'"seed":9223372036854775807,"width":2048,"height":2048,"n":1,'
            b'"response_format":"base64"}',
            id="maximums",
        ),
        pytest.param(
            {"prompt": "a fox", "width": 1024, "height": 768},
            b'{"model":"black-forest-labs/FLUX.1-schnell","prompt":"a fox","steps":4,'
            b'"width":1024,"height":768,"n":1,"response_format":"base64"}',
            id="size-only",
        ),
        pytest.param(
            {
                "prompt": "a fox",
                "extra_body": {
                    "output_format": "png",
                    "guidance_scale": 3.5,
                    "negative_prompt": "blur",
                    "disable_safety_checker": True,
                },
            },
            b'{"model":"black-forest-labs/FLUX.1-schnell","prompt":"a fox","steps":4,"n":1,'
            b'"response_format":"base64","output_format":"png","guidance_scale":3.5,'
            b'"negative_prompt":"blur","disable_safety_checker":true}',
            id="extra-passthrough",
        ),
        pytest.param(
            {"prompt": "g\u00e2teau \U0001f382"},
            b'{"model":"black-forest-labs/FLUX.1-schnell","prompt":"g\xc3\xa2teau '
            b'\xf0\x9f\x8e\x82","steps":4,"n":1,"response_format":"base64"}',
            id="utf8",
        ),
    ],
)
def test_request_body_is_exact(fields: dict[str, Any], body: bytes) -> None:
    assert build(GenerateRequest(**fields)).content == body


@pytest.mark.parametrize(("steps", "sent"), [(None, b""), (28, b'"steps":28,')])
def test_other_models_get_steps_only_when_given(steps: int | None, sent: bytes) -> None:
    """4 steps is schnell's; another model keeps Together's default unless steps are set."""
    req = build(GenerateRequest(prompt="a fox", steps=steps), model="black-forest-labs/FLUX.1-dev")
    assert req.content == (
        b'{"model":"black-forest-labs/FLUX.1-dev","prompt":"a fox",'
        + sent
        + b'"n":1,"response_format":"base64"}'
    )


@pytest.mark.parametrize(
    ("field", "advice"),
    [
        ("prompt", "pass prompt="),
        ("steps", "pass steps="),
        ("seed", "pass seed="),
        ("width", "pass width="),
        ("height", "pass height="),
        ("model", "leave it out"),
        ("n", "leave it out"),
        ("response_format", "leave it out"),
    ],
)
def test_extra_cannot_duplicate_a_field(field: str, advice: str) -> None:
    with pytest.raises(InvalidRequestError, match=advice) as info:
        build(GenerateRequest(prompt="a fox", extra_body={field: 1}))
    assert info.value.provider == "together"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"steps": 51}, "steps between 1 and 50"),
        ({"width": 1020}, "width to be a multiple of 8"),
        ({"height": 32}, "height between 64 and 2048"),
        ({"width": 4096}, "width between 64 and 2048"),
    ],
)
def test_rules_name_the_host_and_the_rule(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidRequestError, match=message) as info:
        Together.rules.check(GenerateRequest(prompt="a fox", **fields), "together")
    assert "together" in str(info.value)


# Against the emulator, over loopback


@pytest.fixture(scope="module")
def emulator() -> Iterator[tuple[EmulatorApp, str]]:
    app = EmulatorApp(default_size=64)
    with serve(app) as url:
        yield app, url


def _provider(url: str, key: str = DEFAULT_API_KEY) -> Together:
    return Together(key, base_url=f"{url}/together")


@pytest.mark.anyio
@pytest.mark.parametrize(
    "fields",
    [
        {"seed": 7},
        {"seed": 0, "steps": 1, "width": 64, "height": 64},
        {"seed": 3, "steps": 50, "width": 128, "height": 64},
        {},
    ],
)
async def test_generate_over_loopback(
    emulator: tuple[EmulatorApp, str], fields: dict[str, Any]
) -> None:
    """The emulator draws exactly what was asked: 4 steps unless given, the size, the seed."""
    app, url = emulator
    app.faults.clear()
    async with FluxClient(_provider(url)) as client:
        image = await client.generate("a red fox in snow", **fields)
    expected = render_png(
        "a red fox in snow",
        seed=fields.get("seed"),
        steps=fields.get("steps", 4),
        width=fields.get("width", 64),
        height=fields.get("height", 64),
    )
    assert image.data == expected
    assert image.provider == "together"
    assert image.request_id is not None
    assert image.request_id.startswith("emu-")


@pytest.mark.anyio
async def test_wrong_key_over_loopback(emulator: tuple[EmulatorApp, str]) -> None:
    """A refused key is an AuthenticationError, sent once, with the key nowhere in it."""
    app, url = emulator
    app.faults.clear()
    before = app.requests_seen
    async with FluxClient(_provider(url, "sk-wrong-key")) as client:
        with pytest.raises(AuthenticationError) as info:
            await client.generate("a fox")
    assert app.requests_seen == before + 1
    assert info.value.status_code == 401
    assert "Invalid API key" in str(info.value)


@pytest.mark.anyio
async def test_rate_limit_waits_what_x_ratelimit_reset_says(
    emulator: tuple[EmulatorApp, str],
) -> None:
    """A 429 carrying only x-ratelimit-reset is retried after exactly that wait."""
    app, url = emulator
    app.faults = FaultPlan([Fault.RATE_LIMIT, Fault.RATE_LIMIT], retry_after=7.5)
    sleeps = Sleeps()
    async with FluxClient(_provider(url), max_retries=Retry(3, sleep=sleeps)) as client:
        image = await client.generate("a fox", seed=1)
    assert sleeps.delays == [7.5, 7.5]
    assert image.data == render_png("a fox", seed=1, steps=4, width=64, height=64)


@pytest.mark.anyio
async def test_rate_limit_error_carries_the_wait(emulator: tuple[EmulatorApp, str]) -> None:
    app, url = emulator
    app.faults = FaultPlan([Fault.RATE_LIMIT], retry_after=3)
    async with FluxClient(_provider(url), max_retries=0) as client:
        with pytest.raises(RateLimitError) as info:
            await client.generate("a fox")
    assert info.value.retry_after == 3.0
    assert info.value.retryable


@pytest.mark.anyio
@pytest.mark.parametrize("fault", [Fault.UNAVAILABLE, Fault.SERVER_ERROR, Fault.INVALID_BASE64])
async def test_transient_failures_are_retried(
    emulator: tuple[EmulatorApp, str], fault: Fault
) -> None:
    """Together's 503 (at capacity), a 500 and a broken image are tried again."""
    app, url = emulator
    app.faults = FaultPlan([fault])
    sleeps = Sleeps()
    async with FluxClient(_provider(url), max_retries=Retry(2, sleep=sleeps)) as client:
        image = await client.generate("a fox", seed=2)
    assert len(sleeps.delays) == 1
    assert image.data == render_png("a fox", seed=2, steps=4, width=64, height=64)


@pytest.mark.anyio
async def test_cut_json_is_an_invalid_response(emulator: tuple[EmulatorApp, str]) -> None:
    app, url = emulator
    app.faults = FaultPlan([Fault.INVALID_JSON])
    async with FluxClient(_provider(url), max_retries=0) as client:
        with pytest.raises(InvalidResponseError, match="invalid JSON"):
            await client.generate("a fox")


@pytest.mark.anyio
async def test_a_broken_rule_sends_nothing(emulator: tuple[EmulatorApp, str]) -> None:
    app, url = emulator
    app.faults.clear()
    before = app.requests_seen
    async with FluxClient(_provider(url)) as client:
        with pytest.raises(InvalidRequestError, match="together needs width"):
            await client.generate("a fox", width=100, height=64)
    assert app.requests_seen == before
