"""The Dataoorts adapter's request: its exact shape, configuration and parameter rules."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import SecretStr

from flux_sdk import ConfigError, Dataoorts, GenerateRequest, InvalidRequestError

from ._dataoorts import KEY, REQ, URL

SDXL = "stabilityai/stable-diffusion-xl-base-1.0"


# The request


def test_request_method_url_and_headers() -> None:
    """The request is a POST to the documented endpoint with Bearer auth and a JSON body."""
    req = Dataoorts(KEY).build_request(REQ)
    assert req.method == "POST"
    assert str(req.url) == URL
    assert req.headers["authorization"] == f"Bearer {KEY}"
    assert req.headers["content-type"] == "application/json"


@pytest.mark.parametrize(
    ("fields", "body"),
    [
        pytest.param(
            {"prompt": "a red fox"},
            b'{"model":"black-forest-labs/flux-1-schnell","data":{"prompt":"a red fox"}}',
            id="prompt-only",
        ),
        pytest.param(
            {"prompt": "a red fox", "steps": 4, "seed": 12345},
            b'{"model":"black-forest-labs/flux-1-schnell",'
            b'"data":{"prompt":"a red fox","steps":4,"seed":12345}}',
            id="steps-and-integer-seed",
        ),
        pytest.param(
            {"prompt": "a red fox", "seed": 0},
            b'{"model":"black-forest-labs/flux-1-schnell","data":{"prompt":"a red fox","seed":0}}',
            id="seed-zero",
        ),
        pytest.param(
            {"prompt": "caf\u00e9 \u2615", "extra_body": {"guidance": 3.5, "tags": ["a", 1]}},
            b'{"model":"black-forest-labs/flux-1-schnell",'
            b'"data":{"prompt":"caf\xc3\xa9 \xe2\x98\x95","guidance":3.5,"tags":["a",1]}}',
            id="utf8-prompt-and-extra",
        ),
    ],
)
def test_request_body_is_exact(fields: dict[str, Any], body: bytes) -> None:
    """The JSON body carries model and data with unset fields omitted and the seed as an int."""
    assert Dataoorts(KEY).build_request(GenerateRequest(**fields)).content == body


def test_other_model_sends_its_name_and_size() -> None:
    """Another model on the same endpoint gets its own name and width/height in the body."""
    req = Dataoorts(KEY, model=SDXL).build_request(
        GenerateRequest(
            prompt="a red fox", width=512, height=768, extra_body={"negative_prompt": "x"}
        )
    )
    assert req.content == (
        b'{"model":"stabilityai/stable-diffusion-xl-base-1.0","data":'
        b'{"prompt":"a red fox","width":512,"height":768,"negative_prompt":"x"}}'
    )


def test_other_model_sends_num_steps() -> None:
    """Steps asked of a non-FLUX model reach it under the name it reads, num_steps."""
    req = Dataoorts(KEY, model=SDXL).build_request(GenerateRequest(prompt="a red fox", steps=10))
    assert json.loads(req.content)["data"] == {"prompt": "a red fox", "num_steps": 10}


def test_env_vars_supply_key_and_base_url(monkeypatch: pytest.MonkeyPatch) -> None:
    """DATAOORTS_API_KEY and DATAOORTS_BASE_URL are used when no argument is given."""
    monkeypatch.setenv("DATAOORTS_API_KEY", "env-key-123")
    monkeypatch.setenv("DATAOORTS_BASE_URL", "http://127.0.0.1:8123/api/v1")
    req = Dataoorts().build_request(REQ)
    assert str(req.url) == "http://127.0.0.1:8123/api/v1"
    assert req.headers["authorization"] == "Bearer env-key-123"


def test_arguments_beat_env_vars(monkeypatch: pytest.MonkeyPatch) -> None:
    """An explicit key (str or SecretStr) and base URL override the environment."""
    monkeypatch.setenv("DATAOORTS_API_KEY", "env-key-123")
    monkeypatch.setenv("DATAOORTS_BASE_URL", "http://127.0.0.1:8123/api/v1")
    req = Dataoorts(SecretStr(KEY), base_url="https://eu.example.com/api/v1").build_request(REQ)
    assert str(req.url) == "https://eu.example.com/api/v1"
    assert req.headers["authorization"] == f"Bearer {KEY}"


@pytest.mark.parametrize("field", ["prompt", "steps", "seed", "width", "height"])
def test_extra_cannot_duplicate_a_core_field(field: str) -> None:
    """An extra key that shadows a real field is refused rather than silently overriding it."""
    request = GenerateRequest(prompt="a red fox", extra_body={field: 3})
    with pytest.raises(InvalidRequestError, match=field):
        Dataoorts(KEY).build_request(request)


def test_a_duplicated_field_is_refused_naming_the_host_and_the_argument() -> None:
    """The refusal says which provider refused, and points at the argument generate()
    takes (steps=..., which Dataoorts sends as num_steps for other models)."""
    request = GenerateRequest(prompt="a red fox", extra_body={"num_steps": 3})
    with pytest.raises(
        InvalidRequestError, match=r"^dataoorts: .*pass steps=\.\.\. instead"
    ) as info:
        Dataoorts(KEY, model="some/other-model").build_request(request)
    assert info.value.provider == "dataoorts"


# Configuration


@pytest.mark.parametrize("key", [None, "", "   "])
def test_missing_key_names_the_env_var(key: str | None) -> None:
    """Without a key the error tells the user which environment variable to set."""
    with pytest.raises(ConfigError, match="DATAOORTS_API_KEY"):
        Dataoorts(key)


def test_key_with_spaces_is_refused_without_echoing_it() -> None:
    """A malformed key is refused and the message does not quote it."""
    with pytest.raises(ConfigError) as info:
        Dataoorts("dk_SeCrEt 7f3a9c1e5b2d4f60")
    assert "7f3a9c1e" not in str(info.value)


@pytest.mark.parametrize(
    "url",
    [
        "http://cloud.dataoorts.com/api/v1",
        "http://10.0.0.1/api/v1",
        "http://127.0.0.1.evil.com/api/v1",
        "http://localhost.evil.com/api/v1",
        "ftp://cloud.dataoorts.com/api/v1",
        "https://user:pw@cloud.dataoorts.com/api/v1",
        "https://cloud.dataoorts.com/api/v1?x=1",
        "not a url",
    ],
)
def test_unsafe_base_url_is_refused(url: str) -> None:
    """Plain http to a remote host (and other unsafe base URLs) are refused before sending."""
    with pytest.raises(ConfigError):
        Dataoorts(KEY, base_url=url)


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:8000/api/v1", "http://localhost:8000/api/v1", "http://[::1]:8000/api/v1"],
)
def test_plain_http_to_loopback_is_allowed(url: str) -> None:
    """Plain http is allowed to a loopback host, for local emulators."""
    assert str(Dataoorts(KEY, base_url=url).build_request(REQ).url) == url


def test_env_base_url_is_checked_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """An unsafe DATAOORTS_BASE_URL is refused just like an argument."""
    monkeypatch.setenv("DATAOORTS_BASE_URL", "http://cloud.dataoorts.com/api/v1")
    with pytest.raises(ConfigError, match="http"):
        Dataoorts(KEY)


def test_empty_model_is_a_config_error() -> None:
    """An empty model name is a setup mistake, reported as ConfigError."""
    with pytest.raises(ConfigError):
        Dataoorts(KEY, model="")


# Parameter rules


@pytest.mark.parametrize(
    ("fields", "ok"),
    [
        ({"prompt": "a"}, False),
        ({"prompt": "ab"}, True),
        ({"prompt": "x" * 2048}, True),
        ({"prompt": "x" * 2049}, False),
        ({"prompt": "ab", "steps": 1}, True),
        ({"prompt": "ab", "steps": 8}, True),
        ({"prompt": "ab", "steps": 9}, False),
        ({"prompt": "ab", "width": 512}, False),
        ({"prompt": "ab", "height": 512}, False),
        ({"prompt": "ab", "seed": 2**63 - 1}, True),
    ],
)
def test_flux_rules(fields: dict[str, Any], ok: bool) -> None:
    """FLUX.1 [schnell] takes a 2..2048-character prompt, 1..8 steps and no size."""
    provider = Dataoorts(KEY)
    request = GenerateRequest(**fields)
    if ok:
        provider.rules.check(request, provider.name)
    else:
        with pytest.raises(InvalidRequestError, match="dataoorts"):
            provider.rules.check(request, provider.name)


@pytest.mark.parametrize(
    ("fields", "ok"),
    [
        ({"width": 256, "height": 2048}, True),
        ({"width": 1000, "height": 777}, True),
        ({"width": 255}, False),
        ({"height": 2049}, False),
        ({"steps": 20}, True),
    ],
)
def test_other_model_rules(fields: dict[str, Any], ok: bool) -> None:
    """Another model name gets that model's rules, with width/height 256..2048."""
    provider = Dataoorts(KEY, model=SDXL)
    request = GenerateRequest(prompt="a red fox", **fields)
    if ok:
        provider.rules.check(request, provider.name)
    else:
        with pytest.raises(InvalidRequestError):
            provider.rules.check(request, provider.name)


def test_other_model_steps_capped_at_20() -> None:
    """The other image models refuse more than 20 steps before anything is sent."""
    provider = Dataoorts(KEY, model=SDXL)
    with pytest.raises(InvalidRequestError):
        provider.rules.check(GenerateRequest(prompt="a red fox", steps=21), provider.name)
