"""OpenAIImages: configuration, the exact request for every parameter the docs table
lists, what it refuses, and the whole stack against the emulator's OpenAI-style route
(nscale's path and DeepInfra's) over loopback."""

from __future__ import annotations

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
    OpenAIImages,
    ParamRules,
    Retry,
)
from flux_sdk.emulator import DEFAULT_API_KEY, EmulatorApp, Fault, FaultPlan, render_png

from ._server import serve
from ._sleeps import Sleeps

KEY = "oa_SeCrEt.0a9b8c7d6e5f4a3b"
NSCALE = "https://inference.api.nscale.com/v1"
DEEPINFRA = "https://api.deepinfra.com/v1/openai"
SCHNELL = "black-forest-labs/FLUX.1-schnell"


def build(request: GenerateRequest, base_url: str = NSCALE, **kwargs: Any) -> httpx.Request:
    return OpenAIImages(base_url, api_key=KEY, **kwargs).build_request(request)


# Configuration


def test_request_method_url_and_headers() -> None:
    req = build(GenerateRequest(prompt="a fox"))
    assert req.method == "POST"
    assert str(req.url) == "https://inference.api.nscale.com/v1/images/generations"
    assert req.headers["authorization"] == f"Bearer {KEY}"
    assert req.headers["content-type"] == "application/json"


@pytest.mark.parametrize(
    ("base_url", "url"),
    [
        (NSCALE, "https://inference.api.nscale.com/v1/images/generations"),
        (DEEPINFRA, "https://api.deepinfra.com/v1/openai/images/generations"),
        ("https://images.example.com", "https://images.example.com/v1/images/generations"),
        ("https://images.example.com/v1/", "https://images.example.com/v1/images/generations"),
        (
            "https://router.huggingface.co/nscale/v1",
            "https://router.huggingface.co/nscale/v1/images/generations",
        ),
        ("http://localhost:8000/v1", "http://localhost:8000/v1/images/generations"),
    ],
)
def test_base_url_is_an_openai_base(base_url: str, url: str) -> None:
    """The base URL an OpenAI client takes; one with no path gets /v1."""
    assert str(build(GenerateRequest(prompt="a fox"), base_url).url) == url


def test_no_base_url_names_the_argument_and_variable() -> None:
    with pytest.raises(ConfigError, match="OPENAI_IMAGES_BASE_URL"):
        OpenAIImages(api_key=KEY)


def test_env_vars_supply_base_url_and_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_IMAGES_BASE_URL", DEEPINFRA)
    monkeypatch.setenv("OPENAI_IMAGES_API_KEY", KEY)
    req = OpenAIImages().build_request(GenerateRequest(prompt="a fox"))
    assert str(req.url) == "https://api.deepinfra.com/v1/openai/images/generations"
    assert req.headers["authorization"] == f"Bearer {KEY}"


def test_api_key_env_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEEPINFRA_TOKEN", KEY)
    req = OpenAIImages(DEEPINFRA, api_key_env="DEEPINFRA_TOKEN").build_request(
        GenerateRequest(prompt="a fox")
    )
    assert req.headers["authorization"] == f"Bearer {KEY}"
    monkeypatch.delenv("DEEPINFRA_TOKEN")
    with pytest.raises(ConfigError, match="DEEPINFRA_TOKEN"):
        OpenAIImages(DEEPINFRA, api_key_env="DEEPINFRA_TOKEN")


def test_an_openai_key_is_never_picked_up(monkeypatch: pytest.MonkeyPatch) -> None:
    """OPENAI_API_KEY belongs to OpenAI: it must not be sent to another company."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-local")
    with pytest.raises(ConfigError, match="OPENAI_IMAGES_API_KEY"):
        OpenAIImages(NSCALE)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"model": ""}, "model"),
        ({"name": ""}, "name"),
        ({"api_key_env": ""}, "api_key_env"),
        ({"rules": {"steps": (1, 4)}}, "ParamRules"),
    ],
)
def test_bad_options_are_config_errors(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        OpenAIImages(NSCALE, api_key=KEY, **kwargs)


@pytest.mark.parametrize("url", ["http://inference.api.nscale.com/v1", "nscale", "https://h/?a=1"])
def test_unsafe_base_url_is_refused(url: str) -> None:
    with pytest.raises(ConfigError, match="base URL"):
        OpenAIImages(url, api_key=KEY)


def test_repr_has_no_key() -> None:
    text = repr(OpenAIImages(DEEPINFRA, api_key=KEY, name="deepinfra"))
    assert KEY not in text
    assert "deepinfra" in text


def test_registry_name() -> None:
    made = flux_sdk.provider("openai", base_url=NSCALE, api_key=KEY)
    assert isinstance(made, OpenAIImages)
    assert made.name == "openai"


# The exact body


@pytest.mark.parametrize(
    ("fields", "body"),
    [
        pytest.param(
            {"prompt": "a fox"},
            b'{"model":"black-forest-labs/FLUX.1-schnell","prompt":"a fox","n":1,'
            b'"size":"1024x1024","response_format":"b64_json"}',
            id="defaults-send-1024",
        ),
        pytest.param(
            {"prompt": "a fox", "seed": 0, "width": 64, "height": 64},
            b'{"model":"black-forest-labs/FLUX.1-schnell","prompt":"a fox","n":1,'
            b'"size":"64x64","response_format":"b64_json","seed":0}',
            id="minimums",
        ),
        pytest.param(
            {"prompt": "a fox", "seed": 2**63 - 1, "width": 2048, "height": 1024},
            b'{"model":"black-forest-labs/FLUX.1-schnell","prompt":"a fox","n":1,'
            b'"size":"2048x1024","response_format":"b64_json","seed":9223372036854775807}',
            id="maximums",
        ),
        pytest.param(
            {"prompt": "a fox", "extra_body": {"user": "u-1", "style": "vivid"}},
            b'{"model":"black-forest-labs/FLUX.1-schnell","prompt":"a fox","n":1,'
            b'"size":"1024x1024","response_format":"b64_json","user":"u-1","style":"vivid"}',
            id="extra-passthrough",
        ),
    ],
)
def test_request_body_is_exact(fields: dict[str, Any], body: bytes) -> None:
    assert build(GenerateRequest(**fields)).content == body


def test_deepinfra_model_id() -> None:
    """DeepInfra spells the model with a hyphen: FLUX-1-schnell."""
    req = build(
        GenerateRequest(prompt="a fox"), DEEPINFRA, model="black-forest-labs/FLUX-1-schnell"
    )
    assert req.content.startswith(b'{"model":"black-forest-labs/FLUX-1-schnell",')


def test_steps_are_refused_before_sending() -> None:
    """The OpenAI API has no steps: refused, naming the host, not silently dropped."""
    with pytest.raises(
        InvalidRequestError, match="deepinfra's OpenAI-style images API has no steps"
    ):
        build(GenerateRequest(prompt="a fox", steps=4), DEEPINFRA, name="deepinfra")


@pytest.mark.parametrize("side", ["width", "height"])
def test_one_side_alone_is_refused(side: str) -> None:
    with pytest.raises(InvalidRequestError, match="both width and height"):
        build(GenerateRequest(prompt="a fox", **{side: 512}))


@pytest.mark.parametrize(
    ("field", "advice"),
    [
        ("prompt", "pass the prompt"),
        ("size", "pass width=... and height=..."),
        ("seed", "pass seed=..."),
        ("model", "leave it out"),
        ("n", "leave it out"),
        ("response_format", "leave it out"),
    ],
)
def test_extra_cannot_duplicate_a_field(field: str, advice: str) -> None:
    with pytest.raises(InvalidRequestError, match=advice):
        build(GenerateRequest(prompt="a fox", extra_body={field: "x"}))


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"width": 1020, "height": 64}, "width to be a multiple of 8"),
        ({"width": 32, "height": 64}, "width between 64 and 2048"),
    ],
)
def test_default_rules(fields: dict[str, Any], message: str) -> None:
    provider = OpenAIImages(NSCALE, api_key=KEY, name="nscale")
    with pytest.raises(InvalidRequestError, match=f"nscale needs {message}"):
        provider.rules.check(GenerateRequest(prompt="a fox", **fields), provider.name)


def test_rules_can_be_the_hosts_own() -> None:
    rules = ParamRules(prompt_chars=(1, 1000), size=(256, 1440), size_multiple=32)
    provider = OpenAIImages(NSCALE, api_key=KEY, rules=rules)
    with pytest.raises(InvalidRequestError, match="between 256 and 1440"):
        provider.rules.check(GenerateRequest(prompt="a", width=2048, height=256), provider.name)


# Against the emulator's OpenAI-style route, over loopback


@pytest.fixture(scope="module")
def emulator() -> Iterator[tuple[EmulatorApp, str]]:
    app = EmulatorApp(default_size=64)
    with serve(app) as url:
        yield app, url


@pytest.mark.anyio
@pytest.mark.parametrize(("path", "name"), [("/v1", "nscale"), ("/v1/openai", "deepinfra")])
@pytest.mark.parametrize(
    "fields",
    [{"seed": 9}, {"seed": 0, "width": 64, "height": 64}, {"seed": 4, "width": 128, "height": 64}],
)
async def test_generate_over_loopback(
    emulator: tuple[EmulatorApp, str], path: str, name: str, fields: dict[str, Any]
) -> None:
    """nscale's path and DeepInfra's both answer with the image the request asked for."""
    app, url = emulator
    app.faults.clear()
    provider = OpenAIImages(url + path, api_key=DEFAULT_API_KEY, name=name)
    async with FluxClient(provider) as client:
        image = await client.generate("a red fox", **fields)
    expected = render_png(
        "a red fox",
        seed=fields["seed"],
        steps=4,
        width=fields.get("width", 1024),
        height=fields.get("height", 1024),
    )
    assert image.data == expected
    assert image.provider == name


@pytest.mark.anyio
async def test_bare_origin_reaches_v1(emulator: tuple[EmulatorApp, str]) -> None:
    app, url = emulator
    app.faults.clear()
    async with FluxClient(OpenAIImages(url, api_key=DEFAULT_API_KEY)) as client:
        image = await client.generate("a fox", seed=1, width=64, height=64)
    assert image.data == render_png("a fox", seed=1, steps=4, width=64, height=64)


@pytest.mark.anyio
async def test_wrong_key_over_loopback(emulator: tuple[EmulatorApp, str]) -> None:
    app, url = emulator
    app.faults.clear()
    before = app.requests_seen
    async with FluxClient(OpenAIImages(url, api_key="sk-wrong-key")) as client:
        with pytest.raises(AuthenticationError, match="Incorrect API key") as info:
            await client.generate("a fox")
    assert info.value.status_code == 401
    assert app.requests_seen == before + 1


@pytest.mark.anyio
async def test_rate_limit_is_retried_after_retry_after(emulator: tuple[EmulatorApp, str]) -> None:
    app, url = emulator
    app.faults = FaultPlan([Fault.RATE_LIMIT, Fault.BAD_GATEWAY], retry_after=4)
    sleeps = Sleeps()
    provider = OpenAIImages(url, api_key=DEFAULT_API_KEY)
    async with FluxClient(provider, max_retries=Retry(3, sleep=sleeps)) as client:
        image = await client.generate("a fox", seed=2, width=64, height=64)
    assert sleeps.delays[0] == 4.0
    assert len(sleeps.delays) == 2
    assert image.data == render_png("a fox", seed=2, steps=4, width=64, height=64)


@pytest.mark.anyio
async def test_refused_steps_send_nothing(emulator: tuple[EmulatorApp, str]) -> None:
    app, url = emulator
    app.faults.clear()
    before = app.requests_seen
    async with FluxClient(OpenAIImages(url, api_key=DEFAULT_API_KEY)) as client:
        with pytest.raises(InvalidRequestError, match="no steps"):
            await client.generate("a fox", steps=4)
    assert app.requests_seen == before
