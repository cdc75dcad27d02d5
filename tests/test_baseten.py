"""The Baseten adapter: the exact request it builds and how it reads every answer."""

from __future__ import annotations

import base64
import email.utils
import io
import json
import time
import warnings
from typing import Any

import httpx
import pytest
import respx
from PIL import Image
from pydantic import SecretStr

import flux_sdk
from flux_sdk import (
    AuthenticationError,
    BadRequestError,
    Baseten,
    ConfigError,
    FluxError,
    FluxWarning,
    GeneratedImage,
    GenerateRequest,
    InvalidRequestError,
    InvalidResponseError,
    ProviderError,
    QuotaExceeded,
    RateLimitError,
    ServerError,
)

KEY = "bt_SeCrEt.9e8d7c6b5a4f3e2d1c"
MODEL_ID = "abcd1234"
URL = "https://model-abcd1234.api.baseten.co/production/predict"
JSON_TYPE = "application/json"


def _image(fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (40, 200, 40)).save(buf, format=fmt)
    return buf.getvalue()


PNG, JPEG, WEBP = _image("PNG"), _image("JPEG"), _image("WEBP")
IMAGES = {"image/png": PNG, "image/jpeg": JPEG, "image/webp": WEBP}
REQ = GenerateRequest(prompt="red velvet cake", seed=42)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def response(
    status: int = 200,
    body: Any = None,
    *,
    content_type: str | None = JSON_TYPE,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    if isinstance(body, (dict, list)):
        content = json.dumps(body).encode()
    elif isinstance(body, str):
        content = body.encode()
    else:
        content = body or b""
    all_headers = {"content-type": content_type} if content_type else {}
    all_headers.update(headers or {})
    return httpx.Response(status, headers=all_headers, content=content)


def parse(resp: httpx.Response) -> GeneratedImage:
    return Baseten(KEY, MODEL_ID).parse_response(REQ, resp)


def error_of(resp: httpx.Response) -> FluxError:
    with pytest.raises(FluxError) as info:
        parse(resp)
    return info.value


def leaks(text: str, secret: str = KEY, run: int = 8) -> bool:
    """Whether any ``run`` consecutive characters of ``secret`` appear in ``text``."""
    return any(secret[i : i + run] in text for i in range(len(secret) - run + 1))


def error_texts(exc: FluxError) -> list[str]:
    return [str(exc), repr(exc), str(getattr(exc, "body", ""))]


def build(request: GenerateRequest = REQ, **kwargs: Any) -> httpx.Request:
    return Baseten(KEY, MODEL_ID, **kwargs).build_request(request)


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


# Successful answers


@pytest.mark.parametrize("media_type", list(IMAGES))
def test_data_field(media_type: str) -> None:
    """``{"data": b64}`` is decoded and its type sniffed from the bytes."""
    data = IMAGES[media_type]
    image = parse(response(body={"data": b64(data)}))
    assert image.data == data
    assert image.media_type == media_type
    assert image.provider == "baseten"
    assert image.seed == 42
    assert image.request is REQ
    assert image.request_id is None


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(b64(PNG), id="plain"),
        pytest.param("data:image/png;base64," + b64(PNG), id="data-url"),
        pytest.param(base64.encodebytes(PNG).decode(), id="line-breaks"),
    ],
)
def test_output_field_fallback(text: str) -> None:
    """The docs' ``{"output": b64}`` form is read when ``data`` is absent."""
    image = parse(response(body={"output": text}))
    assert (image.data, image.media_type) == (PNG, "image/png")


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"data": b64(JPEG), "output": b64(PNG)}, id="both"),
        pytest.param({"data": b64(JPEG), "error": None}, id="null-error"),
        pytest.param({"output": "", "data": b64(JPEG)}, id="empty-output"),
    ],
)
def test_data_preferred(body: dict[str, Any]) -> None:
    """``data`` wins when present, whatever else the body holds."""
    assert parse(response(body=body)).data == JPEG


def test_json_with_charset() -> None:
    """``application/json; charset=utf-8`` is read as JSON."""
    image = parse(
        response(body={"data": b64(WEBP)}, content_type="application/json; charset=utf-8")
    )
    assert image.media_type == "image/webp"


@pytest.mark.parametrize(
    ("content_type", "data", "media_type"),
    [("image/png", JPEG, "image/jpeg"), ("image/jpeg", WEBP, "image/webp")],
)
def test_raw_image_typed_by_content(content_type: str, data: bytes, media_type: str) -> None:
    """A raw image body is typed by its magic bytes, never by the Content-Type."""
    image = parse(response(body=data, content_type=content_type))
    assert (image.data, image.media_type) == (data, media_type)


@pytest.mark.parametrize("header", ["x-request-id", "x-baseten-request-id"])
def test_request_id_on_image(header: str) -> None:
    """Baseten's request id is kept on the image, for support tickets."""
    image = parse(response(body={"data": b64(JPEG)}, headers={header: "bt-req-77"}))
    assert image.request_id == "bt-req-77"


# Errors


@pytest.mark.parametrize(
    ("status", "cls", "retryable", "message"),
    [
        (400, BadRequestError, False, "bad input"),
        (401, AuthenticationError, False, "please check the api-key you provided"),
        (403, AuthenticationError, False, "forbidden"),
        (402, QuotaExceeded, False, "billing"),
        (404, BadRequestError, False, "model not found"),
        (408, BadRequestError, True, "request timeout"),
        (409, BadRequestError, True, "conflict"),
        (413, BadRequestError, False, "body too large"),
        (422, BadRequestError, False, "invalid input"),
        (429, RateLimitError, True, "too many requests"),
        (500, ServerError, True, "CUDA out of memory"),
        (502, ServerError, True, "model crashed"),
        (503, ServerError, True, "draining"),
        (504, ServerError, True, "ran past the timeout"),
    ],
)
@pytest.mark.parametrize("header", ["x-request-id", "x-baseten-request-id"])
def test_status_errors(
    status: int, cls: type[ProviderError], retryable: bool, message: str, header: str
) -> None:
    """Each HTTP error status maps to its class and retry decision, quoting Baseten's error."""
    err = error_of(response(status, {"error": message}, headers={header: "bt-9"}))
    assert type(err) is cls
    assert isinstance(err, ProviderError)
    assert err.retryable is retryable
    assert err.status_code == status
    assert err.provider == "baseten"
    assert message in str(err)
    assert message in err.body
    assert err.request_id == "bt-9"


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "3"}, 3.0),
        ({"retry-after-ms": "250"}, 0.25),
        ({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, 0.0),
        ({}, None),
    ],
)
def test_retry_after(headers: dict[str, str], expected: float | None) -> None:
    """A 429 or 503 carries the delay Baseten asked for."""
    for status in (429, 503):
        err = error_of(response(status, {"error": "busy"}, headers=headers))
        assert isinstance(err, ProviderError)
        assert err.retry_after == expected


def test_retry_after_http_date() -> None:
    """A Retry-After HTTP date in the future becomes the seconds until then."""
    when = email.utils.formatdate(time.time() + 60, usegmt=True)
    err = error_of(response(503, b"", content_type=None, headers={"Retry-After": when}))
    assert type(err) is ServerError
    assert err.retry_after is not None
    assert 50 < err.retry_after <= 60


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_redirects_are_not_followed(status: int) -> None:
    """A redirect is an error that says it was not followed, so the key never goes elsewhere."""
    err = error_of(response(status, b"", content_type=None, headers={"location": "https://x.io/"}))
    assert type(err) is ProviderError
    assert err.retryable is False
    assert "never follows redirects" in str(err)


def test_error_field_at_200_is_a_provider_error() -> None:
    """``{"error": ...}`` with HTTP 200 and no image is a ProviderError not worth retrying."""
    err = error_of(
        response(200, {"error": "prompt is required"}, headers={"x-baseten-request-id": "b1"})
    )
    assert type(err) is ProviderError
    assert err.retryable is False
    assert err.status_code == 200
    assert "prompt is required" in str(err)
    assert err.request_id == "b1"


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        pytest.param({}, JSON_TYPE, id="empty-object"),
        pytest.param({"data": None}, JSON_TYPE, id="null-data"),
        pytest.param({"data": ""}, JSON_TYPE, id="empty-data"),
        pytest.param({"result": b64(PNG)}, JSON_TYPE, id="other-key"),
        pytest.param("not json", JSON_TYPE, id="invalid-json"),
        pytest.param('{"data": "iVBO', JSON_TYPE, id="truncated-json"),
        pytest.param({"data": 5}, JSON_TYPE, id="data-is-a-number"),
        pytest.param({"data": [b64(PNG)]}, JSON_TYPE, id="data-is-a-list"),
        pytest.param([b64(PNG)], JSON_TYPE, id="json-array"),
        pytest.param({"data": "!!not*base64!!"}, JSON_TYPE, id="bad-base64"),
        pytest.param({"data": b64(b"plain text, not an image")}, JSON_TYPE, id="non-image"),
        pytest.param("<html><body>Welcome</body></html>", "text/html", id="html-page"),
        pytest.param("<html><body>Welcome</body></html>", JSON_TYPE, id="html-as-json"),
        pytest.param(b"GIF89a\x01\x00", "image/gif", id="raw-gif"),
    ],
)
def test_invalid_success_responses(body: Any, content_type: str) -> None:
    """A 200 without a usable image is a retryable InvalidResponseError, never a crash."""
    err = error_of(response(200, body, content_type=content_type, headers={"x-request-id": "q"}))
    assert type(err) is InvalidResponseError
    # Well-formed JSON of another shape comes back the same on every try: not retried.
    assert err.retryable is ("unexpected shape" not in str(err))
    assert err.provider == "baseten"
    assert err.request_id == "q"


# Secrets


def test_key_not_in_provider_repr_or_str() -> None:
    """Printing or logging the provider never shows the key."""
    provider = Baseten(KEY, MODEL_ID)
    for text in (repr(provider), str(provider), repr(provider.api_key)):
        assert not leaks(text)
    assert URL in repr(provider)


def test_key_not_in_built_request_repr() -> None:
    """Logging the built HTTP request or its headers never shows the key."""
    req = build()
    assert not leaks(repr(req))
    assert not leaks(repr(req.headers))


@pytest.mark.parametrize(
    ("status", "body", "content_type"),
    [
        (401, {"error": f"please check the api-key you provided: {KEY}"}, JSON_TYPE),
        (500, {"error": f"Traceback ... headers={{'Authorization': 'Api-Key {KEY}'}}"}, JSON_TYPE),
        (502, f"upstream said {KEY}", "text/plain"),
        (200, {"error": f"bad key {KEY}"}, JSON_TYPE),
        (200, f"{{broken {KEY}", JSON_TYPE),
    ],
)
def test_key_echoed_by_server_is_redacted(status: int, body: Any, content_type: str) -> None:
    """A key the server echoes back never reaches the error's text, repr or body."""
    err = error_of(response(status, body, content_type=content_type))
    for text in error_texts(err):
        assert not leaks(text), text


@pytest.mark.parametrize("status", [500, 200])
def test_key_straddling_the_excerpt_cut_is_redacted(status: int) -> None:
    """An echoed key is redacted from error bodies even where the excerpt is cut."""
    start = json.dumps({"error": "MARK"}).index("MARK")
    body = {"error": "x" * (990 - start) + KEY}
    assert json.dumps(body).index(KEY) == 990
    err = error_of(response(status, body))
    assert isinstance(err, ProviderError)
    assert not leaks(err.body), err.body[-20:]


def test_key_straddling_invalid_json_quote_is_redacted() -> None:
    """An echoed key in a malformed JSON body is not quoted, even in part."""
    err = error_of(response(200, "{" + "x" * 190 + KEY))
    assert type(err) is InvalidResponseError
    assert not leaks(str(err)), str(err)


# End to end through FluxClient


@pytest.mark.anyio
async def test_end_to_end_through_client() -> None:
    """FluxClient sends the exact Baseten request and returns the decoded image."""
    with respx.mock(assert_all_called=True, assert_all_mocked=True) as router:
        route = router.post(URL).mock(
            return_value=httpx.Response(
                200, json={"data": b64(JPEG)}, headers={"x-baseten-request-id": "bt-e2e"}
            )
        )
        async with flux_sdk.FluxClient(Baseten(KEY, MODEL_ID)) as client:
            image = await client.generate(
                "red velvet cake",
                seed=42,
                steps=4,
                width=1024,
                height=1024,
                extra_body={"prompt2": "oil"},
            )
    assert route.call_count == 1
    sent = route.calls.last.request
    assert sent.method == "POST"
    assert str(sent.url) == URL
    assert sent.headers["authorization"] == f"Api-Key {KEY}"
    assert sent.headers["content-type"] == "application/json"
    assert sent.headers["user-agent"].startswith("flux-sdk-python/")
    assert sent.content == (
        b'{"prompt":"red velvet cake","seed":42,"num_inference_steps":4,'
        b'"width":1024,"height":1024,"prompt2":"oil"}'
    )
    assert image.data == JPEG
    assert image.media_type == "image/jpeg"
    assert image.provider == "baseten"
    assert image.seed == 42
    assert image.attempts == 1
    assert image.elapsed >= 0
    assert image.request_id == "bt-e2e"


@pytest.mark.anyio
async def test_end_to_end_server_error_through_client() -> None:
    """A model's own error at HTTP 500 reaches the caller as a retryable ServerError."""
    with respx.mock(assert_all_called=True, assert_all_mocked=True) as router:
        router.post(URL).mock(return_value=httpx.Response(500, json={"error": "CUDA OOM"}))
        async with flux_sdk.FluxClient(Baseten(KEY, MODEL_ID), max_retries=0) as client:
            with pytest.raises(ServerError, match="CUDA OOM") as info:
                await client.generate("red velvet cake")
    assert info.value.retryable is True
    assert info.value.status_code == 500


@pytest.mark.anyio
async def test_seed_zero_warning_points_at_caller() -> None:
    """The seed-0 warning is attributed to the caller's own line, not to flux_sdk."""
    with respx.mock(assert_all_called=True, assert_all_mocked=True) as router:
        router.post(URL).mock(return_value=httpx.Response(200, json={"data": b64(PNG)}))
        async with flux_sdk.FluxClient(Baseten(KEY, MODEL_ID)) as client:
            with pytest.warns(FluxWarning) as record:
                await client.generate("red velvet cake", seed=0)
    assert record[0].filename == __file__
