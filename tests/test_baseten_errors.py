"""Baseten failures and secrets: every error answer, key redaction, and both end to end."""

from __future__ import annotations

import email.utils
import json
import time
from typing import Any

import httpx
import pytest
import respx

import flux_sdk
from flux_sdk import (
    AuthenticationError,
    BadRequestError,
    Baseten,
    FluxError,
    FluxWarning,
    InvalidResponseError,
    ProviderError,
    QuotaExceeded,
    RateLimitError,
    ServerError,
)

from ._baseten import JPEG, KEY, MODEL_ID, PNG, URL, build, parse
from ._wire import JSON_TYPE, b64, error_texts, response
from ._wire import leaks as leaks_of


def leaks(text: str) -> bool:
    """Whether any 8 consecutive characters of the key appear in ``text``."""
    return leaks_of(text, KEY)


def error_of(resp: httpx.Response) -> FluxError:
    with pytest.raises(FluxError) as info:
        parse(resp)
    return info.value


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
