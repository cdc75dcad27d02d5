"""The Baseten adapter's request: its exact shape, configuration and parameter rules."""

from __future__ import annotations

import json
import warnings
from typing import Any

import pytest
from pydantic import SecretStr

from flux_sdk import Baseten, ConfigError, FluxWarning, GenerateRequest, InvalidRequestError

from ._baseten import KEY, MODEL_ID, PNG, REQ, URL, build, parse
from ._wire import b64, response

# The request


def test_request_method_url_and_headers() -> None:
    """The request is a POST to the model's production predict URL with Api-Key auth."""
    req = build()
    assert req.method == "POST"
    assert str(req.url) == URL
    assert req.headers["authorization"] == f"Api-Key {KEY}"
    assert req.headers["content-type"] == "application/json"


@pytest.mark.parametrize(
    ("kwargs", "url"),
    [
        ({}, URL),
        ({"environment": "production"}, URL),
        (
            {"environment": "development"},
            "https://model-abcd1234.api.baseten.co/development/predict",
        ),
        (
            {"environment": "staging"},
            "https://model-abcd1234.api.baseten.co/environments/staging/predict",
        ),
        (
            {"deployment_id": "qwe9rt1"},
            "https://model-abcd1234.api.baseten.co/deployment/qwe9rt1/predict",
        ),
        ({"base_url": "http://127.0.0.1:8000"}, "http://127.0.0.1:8000/production/predict"),
        (
            {"base_url": "https://proxy.example.com/baseten/", "environment": "canary"},
            "https://proxy.example.com/baseten/environments/canary/predict",
        ),
    ],
)
def test_url_variants(kwargs: dict[str, Any], url: str) -> None:
    """The environment, deployment id and base URL choose the documented predict path."""
    assert str(build(**kwargs).url) == url


def test_base_url_makes_model_id_optional() -> None:
    """With a base URL the model id is not needed."""
    req = Baseten(KEY, base_url="http://localhost:9000").build_request(REQ)
    assert str(req.url) == "http://localhost:9000/production/predict"


@pytest.mark.parametrize(
    ("fields", "body"),
    [
        pytest.param({"prompt": "red velvet cake"}, b'{"prompt":"red velvet cake"}', id="prompt"),
        pytest.param(
            {"prompt": "red velvet cake", "seed": 42, "steps": 4, "width": 1216, "height": 832},
            b'{"prompt":"red velvet cake","seed":42,"num_inference_steps":4,'
            b'"width":1216,"height":832}',
            id="all-fields",
        ),
        pytest.param(
            {
                "prompt": "cake",
                "extra_body": {"prompt2": "oil painting", "max_sequence_length": 512},
            },
            b'{"prompt":"cake","prompt2":"oil painting","max_sequence_length":512}',
            id="extra-passthrough",
        ),
        pytest.param(
            {"prompt": "g\u00e2teau \U0001f382"},
            b'{"prompt":"g\xc3\xa2teau \xf0\x9f\x8e\x82"}',
            id="utf8-prompt",
        ),
    ],
)
def test_request_body_is_exact(fields: dict[str, Any], body: bytes) -> None:
    """The JSON body uses the truss's field names, top level, with unset fields omitted."""
    assert build(GenerateRequest(**fields)).content == body


@pytest.mark.parametrize("field", ["prompt", "seed", "num_inference_steps", "width", "height"])
def test_extra_cannot_duplicate_a_core_field(field: str) -> None:
    """An extra key that shadows a real field is refused rather than silently overriding it."""
    with pytest.raises(InvalidRequestError, match=field):
        build(GenerateRequest(prompt="cake", extra_body={field: 3}))


def test_extra_num_inference_steps_points_to_steps() -> None:
    """The refusal of extra num_inference_steps tells the user to pass steps= instead."""
    with pytest.raises(InvalidRequestError, match=r"steps=\.\.\."):
        build(GenerateRequest(prompt="cake", extra_body={"num_inference_steps": 3}))


def test_seed_zero_warns_and_is_still_sent() -> None:
    """Seed 0 means 'random' to this model, so it warns, but the seed is still sent."""
    with pytest.warns(FluxWarning, match="seed=0"):
        req = build(GenerateRequest(prompt="cake", seed=0))
    assert req.content == b'{"prompt":"cake","seed":0}'


def test_seed_zero_image_has_no_seed() -> None:
    """With seed=0 the model drew a random seed it does not return: the image's seed is
    None, so nobody reproduces it with seed 0."""
    request = GenerateRequest(prompt="cake", seed=0)
    image = Baseten(KEY, MODEL_ID).parse_response(request, response(body={"data": b64(PNG)}))
    assert image.seed is None
    assert image.request.seed == 0
    assert parse(response(body={"data": b64(PNG)})).seed == 42


@pytest.mark.parametrize(
    ("extra", "rule"),
    [
        ({"prompt2": 5}, "a string"),
        ({"prompt2": None}, "a string"),
        ({"prompt2": ["a", "b"]}, "a string"),
        ({"max_sequence_length": 513}, "1 to 512"),
        ({"max_sequence_length": 0}, "1 to 512"),
        ({"max_sequence_length": 256.0}, "1 to 512"),
        ({"max_sequence_length": "256"}, "1 to 512"),
        ({"max_sequence_length": True}, "1 to 512"),
        ({"guidance_scale": "0"}, "a number"),
        ({"guidance_scale": True}, "a number"),
        ({"guidance_scale": None}, "a number"),
    ],
)
def test_extras_that_crash_the_model_are_refused(extra: dict[str, Any], rule: str) -> None:
    """prompt2, max_sequence_length and guidance_scale of the wrong kind would crash the
    model into a billed 500 (then retried): refused before sending, naming the rule."""
    with pytest.raises(InvalidRequestError, match=rule) as info:
        build(GenerateRequest(prompt="cake", extra_body=extra))
    assert info.value.provider == "baseten"
    assert f"extra_body[{next(iter(extra))!r}]" in str(info.value)


@pytest.mark.parametrize(
    "extra",
    [
        {"prompt2": "in oil paint"},
        {"max_sequence_length": 1},
        {"max_sequence_length": 512},
        {"guidance_scale": 0},
        {"guidance_scale": 3.5},
        {"other": [1, 2]},
    ],
)
def test_good_extras_are_sent_as_given(extra: dict[str, Any]) -> None:
    """Valid extras (and fields the model does not read) go into the body unchanged."""
    sent = json.loads(build(GenerateRequest(prompt="cake", extra_body=extra)).content)
    assert sent == {"prompt": "cake", **extra}


@pytest.mark.parametrize("seed", [None, 1, 2**63 - 1])
def test_other_seeds_do_not_warn(seed: int | None) -> None:
    """Any seed other than 0 builds the request without a warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        build(GenerateRequest(prompt="cake", seed=seed))


def test_env_vars_supply_key_and_model_id(monkeypatch: pytest.MonkeyPatch) -> None:
    """BASETEN_API_KEY and BASETEN_MODEL_ID are used when no argument is given."""
    monkeypatch.setenv("BASETEN_API_KEY", "env-key-123")
    monkeypatch.setenv("BASETEN_MODEL_ID", "zz99yy88")
    req = Baseten().build_request(REQ)
    assert str(req.url) == "https://model-zz99yy88.api.baseten.co/production/predict"
    assert req.headers["authorization"] == "Api-Key env-key-123"


def test_env_base_url_replaces_model_id(monkeypatch: pytest.MonkeyPatch) -> None:
    """BASETEN_BASE_URL supplies the host, so no model id is needed."""
    monkeypatch.setenv("BASETEN_API_KEY", "env-key-123")
    monkeypatch.setenv("BASETEN_BASE_URL", "http://[::1]:8080")
    assert str(Baseten().build_request(REQ).url) == "http://[::1]:8080/production/predict"


def test_arguments_beat_env_vars(monkeypatch: pytest.MonkeyPatch) -> None:
    """An explicit key (str or SecretStr) and model id override the environment."""
    monkeypatch.setenv("BASETEN_API_KEY", "env-key-123")
    monkeypatch.setenv("BASETEN_MODEL_ID", "zz99yy88")
    req = Baseten(SecretStr(KEY), MODEL_ID).build_request(REQ)
    assert str(req.url) == URL
    assert req.headers["authorization"] == f"Api-Key {KEY}"


# Configuration


@pytest.mark.parametrize("key", [None, "", "  "])
def test_missing_key_names_the_env_var(key: str | None) -> None:
    """Without a key the error tells the user which environment variable to set."""
    with pytest.raises(ConfigError, match="BASETEN_API_KEY"):
        Baseten(key, MODEL_ID)


@pytest.mark.parametrize("model_id", [None, ""])
def test_missing_model_id_names_the_env_var(model_id: str | None) -> None:
    """Without a model id (or base URL) the error names BASETEN_MODEL_ID."""
    with pytest.raises(ConfigError, match="BASETEN_MODEL_ID"):
        Baseten(KEY, model_id)


@pytest.mark.parametrize(
    "model_id",
    ["abc/def", "abcd1234.evil.com", "abc@evil.com", "-abc", "abc def", "abc?x", "a" * 129],
)
def test_invalid_model_id_is_refused(model_id: str) -> None:
    """A model id that could change the host or path is refused."""
    with pytest.raises(ConfigError, match="model id"):
        Baseten(KEY, model_id)


def test_invalid_model_id_from_env_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """BASETEN_MODEL_ID is checked like an argument."""
    monkeypatch.setenv("BASETEN_MODEL_ID", "x.evil.com")
    with pytest.raises(ConfigError, match="model id"):
        Baseten(KEY)


@pytest.mark.parametrize("environment", ["", "staging/x", "..", "a b", "prod?x=1", "env#frag"])
def test_invalid_environment_is_refused(environment: str) -> None:
    """An environment name that could change the path is refused."""
    with pytest.raises(ConfigError, match="environment"):
        Baseten(KEY, MODEL_ID, environment=environment)


@pytest.mark.parametrize("deployment_id", ["", "../production", "a/b", "a.b"])
def test_invalid_deployment_id_is_refused(deployment_id: str) -> None:
    """A deployment id that could change the path is refused."""
    with pytest.raises(ConfigError, match="deployment id"):
        Baseten(KEY, MODEL_ID, deployment_id=deployment_id)


@pytest.mark.parametrize("environment", ["development", "staging"])
def test_environment_and_deployment_id_together_are_refused(environment: str) -> None:
    """Naming both an environment and a deployment is ambiguous and refused."""
    with pytest.raises(ConfigError, match="either"):
        Baseten(KEY, MODEL_ID, environment=environment, deployment_id="qwe9rt1")


@pytest.mark.parametrize(
    "url",
    [
        "http://model-abcd1234.api.baseten.co",
        "http://192.168.1.10:8000",
        "http://127.0.0.1.evil.com",
        "https://user:pw@model-abcd1234.api.baseten.co",
        "https://model-abcd1234.api.baseten.co?x=1",
        "ftp://model-abcd1234.api.baseten.co",
    ],
)
def test_unsafe_base_url_is_refused(url: str) -> None:
    """Plain http to a remote host (and other unsafe base URLs) are refused before sending."""
    with pytest.raises(ConfigError):
        Baseten(KEY, base_url=url)


@pytest.mark.parametrize(
    "base", ["http://127.0.0.1:8000", "http://localhost:8000", "http://[::1]:8000"]
)
def test_plain_http_to_loopback_is_allowed(base: str) -> None:
    """Plain http is allowed to a loopback host, for local emulators."""
    assert str(Baseten(KEY, base_url=base).build_request(REQ).url) == base + "/production/predict"


# Parameter rules


@pytest.mark.parametrize(
    ("fields", "ok"),
    [
        ({"steps": 1}, True),
        ({"steps": 50}, True),
        ({"steps": 51}, False),
        ({"width": 1024, "height": 1024}, True),
        ({"width": 1216, "height": 832}, True),
        ({"width": 896, "height": 1152}, True),
        ({"width": 64, "height": 2048}, True),
        ({"width": 48}, False),
        ({"height": 2064}, False),
        ({"width": 1000}, False),
        ({"height": 1030}, False),
    ],
)
def test_rules(fields: dict[str, Any], ok: bool) -> None:
    """Baseten takes 1..50 steps and sides of 64..2048 pixels in multiples of 16."""
    provider = Baseten(KEY, MODEL_ID)
    request = GenerateRequest(prompt="cake", **fields)
    if ok:
        provider.rules.check(request, provider.name)
    else:
        with pytest.raises(InvalidRequestError, match="baseten"):
            provider.rules.check(request, provider.name)
