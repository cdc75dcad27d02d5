"""How Together and OpenAI-style hosts' answers are read: every success and error variant,
for both providers (they share the shapes), and the rate-limit reset parser."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from PIL import Image

from flux_sdk import (
    AuthenticationError,
    BadRequestError,
    FluxError,
    GeneratedImage,
    GenerateRequest,
    InvalidResponseError,
    OpenAIImages,
    ProviderError,
    RateLimitError,
    ServerError,
    Together,
)
from flux_sdk.providers._images_api import reset_seconds

KEY = "tg_SeCrEt.5c4b3a2918f7e6d5"
REQ = GenerateRequest(prompt="a red fox", seed=5)


def _image(fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 80, 20)).save(buf, format=fmt)
    return buf.getvalue()


PNG, JPEG, WEBP = _image("PNG"), _image("JPEG"), _image("WEBP")
Parse = Callable[[httpx.Response], GeneratedImage]


def _together(response: httpx.Response) -> GeneratedImage:
    return Together(KEY).parse_response(REQ, response)


def _openai(response: httpx.Response) -> GeneratedImage:
    provider = OpenAIImages("https://inference.api.nscale.com/v1", api_key=KEY, name="nscale")
    return provider.parse_response(REQ, response)


@pytest.fixture(params=[_together, _openai], ids=["together", "openai"])
def parse(request: pytest.FixtureRequest) -> Parse:
    parse: Parse = request.param
    return parse


def answer(status: int = 200, body: Any = None, **headers: str) -> httpx.Response:
    content = json.dumps(body).encode() if isinstance(body, (dict, list)) else (body or b"")
    all_headers = {"content-type": "application/json", **headers}
    return httpx.Response(status, headers=all_headers, content=content)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def error_of(parse: Parse, response: httpx.Response) -> FluxError:
    with pytest.raises(FluxError) as info:
        parse(response)
    return info.value


# Answers


@pytest.mark.parametrize(
    ("data", "media_type"), [(PNG, "image/png"), (JPEG, "image/jpeg"), (WEBP, "image/webp")]
)
def test_b64_json_item_in_either_shape(parse: Parse, data: bytes, media_type: str) -> None:
    """Together's item (index, type, b64_json) and OpenAI's (b64_json) both give the image."""
    for item in ({"index": 0, "type": "b64_json", "b64_json": b64(data)}, {"b64_json": b64(data)}):
        body = {"id": "x", "object": "list", "created": 1, "data": [item]}
        image = parse(answer(200, body, **{"cf-ray": "8f1e-LHR"}))
        assert image.data == data
        assert image.media_type == media_type
        assert image.request_id == "8f1e-LHR"


def test_data_url_in_url_is_decoded(parse: Parse) -> None:
    """A ``data:`` URL in ``url`` (what the emulator's url format sends) is read too."""
    item = {"index": 0, "type": "url", "url": f"data:image/png;base64,{b64(PNG)}"}
    assert parse(answer(200, {"data": [item]})).data == PNG


def test_only_the_first_image_is_taken(parse: Parse) -> None:
    items = [{"b64_json": b64(PNG)}, {"b64_json": b64(JPEG)}]
    assert parse(answer(200, {"data": items})).data == PNG


def test_a_hosted_url_is_refused_with_advice(parse: Parse) -> None:
    """flux_sdk asked for base64; a URL means the host ignored response_format."""
    item = {"type": "url", "url": "https://cdn.example.com/x.jpg"}
    exc = error_of(parse, answer(200, {"data": [item]}))
    assert isinstance(exc, InvalidResponseError)
    assert "response_format" in str(exc)


@pytest.mark.parametrize(
    "body",
    [
        {"data": []},
        {"id": "x"},
        {"data": [{"index": 0}]},
        b'{"data": [{"b64_json": "iVBORw0KGgo',
        b"<html>bad gateway</html>",
        {"data": "nope"},
    ],
    ids=["empty", "no-data", "no-image", "cut-json", "html", "wrong-type"],
)
def test_answers_without_an_image(parse: Parse, body: Any) -> None:
    """A 200 with no readable image is an InvalidResponseError, retryable unless it is
    well-formed JSON of another shape (the same on every try)."""
    exc = error_of(parse, answer(200, body))
    assert isinstance(exc, InvalidResponseError)
    assert exc.retryable is (body != {"data": "nope"})


@pytest.mark.parametrize("text", ["iVBORw0KGgoAAAANSUhEUgAAA!", b64(b"not an image at all")])
def test_bad_base64_or_not_an_image(parse: Parse, text: str) -> None:
    exc = error_of(parse, answer(200, {"data": [{"b64_json": text}]}))
    assert isinstance(exc, InvalidResponseError)


# Errors


def _error(message: str, kind: str = "invalid_request_error", code: str | None = None) -> Any:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


@pytest.mark.parametrize(
    ("status", "cls", "retryable"),
    [
        (400, BadRequestError, False),
        (401, AuthenticationError, False),
        (403, AuthenticationError, False),
        (404, BadRequestError, False),
        (422, BadRequestError, False),
        (429, RateLimitError, True),
        (500, ServerError, True),
        (502, ServerError, True),
        (503, ServerError, True),
        (504, ServerError, True),
    ],
)
def test_error_statuses(parse: Parse, status: int, cls: type[FluxError], retryable: bool) -> None:
    """Each status maps to its error class; the host's message is quoted."""
    exc = error_of(parse, answer(status, _error(f"something went wrong {status}")))
    assert type(exc) is cls
    assert exc.retryable is retryable
    assert f"something went wrong {status}" in str(exc)
    assert isinstance(exc, ProviderError)
    assert exc.status_code == status


def test_plain_text_error_body_is_quoted(parse: Parse) -> None:
    response = httpx.Response(503, headers={"content-type": "text/plain"}, content=b"overloaded")
    exc = error_of(parse, response)
    assert isinstance(exc, ServerError)
    assert "overloaded" in str(exc)


@pytest.mark.parametrize(
    ("headers", "wait"),
    [
        ({"x-ratelimit-reset": "2"}, 2.0),
        ({"x-ratelimit-reset": "0.25"}, 0.25),
        ({"x-ratelimit-reset-requests": "1m30s"}, 90.0),
        ({"x-ratelimit-reset-requests": "120ms"}, 0.12),
        ({"retry-after": "5", "x-ratelimit-reset": "2"}, 5.0),
        ({"retry-after-ms": "300", "x-ratelimit-reset": "2"}, 0.3),
        ({"x-ratelimit-reset": "soon"}, None),
        ({}, None),
    ],
)
def test_rate_limit_wait(parse: Parse, headers: dict[str, str], wait: float | None) -> None:
    """A 429's retry_after: Retry-After first, then x-ratelimit-reset(-requests)."""
    exc = error_of(
        parse, answer(429, _error("over your rate", "dynamic_request_limited"), **headers)
    )
    assert isinstance(exc, RateLimitError)
    assert exc.retry_after == pytest.approx(wait) if wait is not None else exc.retry_after is None


def test_reset_on_a_success_or_other_error_is_not_a_wait(parse: Parse) -> None:
    """x-ratelimit-reset says when a window refills: only a 429 turns it into a wait."""
    exc = error_of(parse, answer(503, _error("busy", "server_error"), **{"x-ratelimit-reset": "9"}))
    assert isinstance(exc, ProviderError)
    assert exc.retry_after is None


@pytest.mark.parametrize(
    "body",
    [
        _error("Insufficient credit", "invalid_request_error"),
        _error("You exceeded your current quota", "insufficient_quota", "insufficient_quota"),
        _error("nope", "invalid_request_error", "insufficient_quota"),
    ],
    ids=["nscale-credit", "openai-quota", "code"],
)
def test_out_of_credit_429_is_not_retried(parse: Parse, body: Any) -> None:
    """nscale's and OpenAI's 429 for an empty account: waiting cannot help."""
    exc = error_of(parse, answer(429, body))
    assert isinstance(exc, RateLimitError)
    assert exc.retryable is False


@pytest.mark.parametrize(("value", "retryable"), [("false", False), ("true", True)])
def test_x_should_retry_decides(parse: Parse, value: str, retryable: bool) -> None:
    """The host's own x-should-retry overrides the status's default."""
    status = 503 if value == "false" else 400
    exc = error_of(parse, answer(status, _error("x"), **{"x-should-retry": value}))
    assert exc.retryable is retryable


def test_key_echoed_by_the_host_is_redacted(parse: Parse) -> None:
    """A host that quotes the key back in its error never gets it into ours."""
    exc = error_of(parse, answer(401, _error(f"Invalid API key: {KEY}"), **{"x-request-id": KEY}))
    assert isinstance(exc, ProviderError)
    for text in (str(exc), repr(exc), exc.body or "", exc.request_id or ""):
        assert KEY not in text


# The reset parser


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("3", 3.0),
        (" 1.5 ", 1.5),
        ("12ms", 0.012),
        ("6m0s", 360.0),
        ("1h2m3s", 3723.0),
        ("2S", 2.0),
        ("1700000100", 100.0),
        ("1699999000", 0.0),
        ("", None),
        (None, None),
        ("-1", None),
        ("nan", None),
        ("inf", None),
        ("1.2.3s", None),
        ("later", None),
    ],
)
def test_reset_seconds(value: str | None, seconds: float | None) -> None:
    """Seconds, Go-style durations and Unix times; anything else is no hint at all."""
    result = reset_seconds(value, now=1_700_000_000)
    assert result == pytest.approx(seconds) if seconds is not None else result is None
