"""Dataoorts failures and secrets: every error answer, key redaction, and both end to end."""

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
    Dataoorts,
    InvalidResponseError,
    ProviderError,
    QuotaExceeded,
    RateLimitError,
    ServerError,
)

from ._dataoorts import JPEG, KEY, PNG, REQ, URL, envelope, error_of, failure
from ._wire import JSON_TYPE, b64, error_texts, response
from ._wire import leaks as leaks_of


def leaks(text: str) -> bool:
    """Whether any 8 consecutive characters of the key appear in ``text``."""
    return leaks_of(text, KEY)


# Failures reported in the envelope


@pytest.mark.parametrize(
    ("code", "retryable"),
    [(3007, True), (3008, True), (3040, True), (3036, False), (5006, False), (1000, False)],
)
def test_success_false_at_200(code: int, retryable: bool) -> None:
    """``success: false`` at HTTP 200 is a ProviderError, retryable only for transient codes."""
    err = error_of(response(body=failure((code, "first thing"), (9999, "second thing"))))
    assert type(err) is ProviderError
    assert "first thing" in str(err)
    assert "second thing" in str(err)
    assert err.status_code == 200
    assert err.retryable is retryable
    assert err.provider == "dataoorts"
    assert "first thing" in err.body


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"success": False, "errors": []}, id="no-errors"),
        pytest.param({"errors": [{"code": 3040, "message": "busy"}]}, id="errors-without-success"),
        pytest.param({"success": False, "errors": ["plain text"]}, id="string-error"),
    ],
)
def test_other_reported_failures(body: dict[str, Any]) -> None:
    """Any envelope that reports errors and has no image is a ProviderError, not a crash."""
    err = error_of(response(body=body, headers={"x-request-id": "rid-9"}))
    assert type(err) is ProviderError
    assert err.request_id == "rid-9"


# HTTP status errors


@pytest.mark.parametrize(
    ("status", "cls", "retryable"),
    [
        (400, BadRequestError, False),
        (401, AuthenticationError, False),
        (403, AuthenticationError, False),
        (404, BadRequestError, False),
        (408, BadRequestError, True),
        (409, BadRequestError, True),
        (422, BadRequestError, False),
        (500, ServerError, True),
        (502, ServerError, True),
        (503, ServerError, True),
        (504, ServerError, True),
    ],
)
def test_status_errors(status: int, cls: type[ProviderError], retryable: bool) -> None:
    """Each HTTP error status maps to its error class and retry decision, quoting the host."""
    err = error_of(
        response(status, failure((1000, "the host says no")), headers={"x-request-id": "r-1"})
    )
    assert type(err) is cls
    assert err.retryable is retryable
    assert err.status_code == status
    assert "the host says no" in str(err)
    assert "the host says no" in err.body
    assert err.request_id == "r-1"
    assert "r-1" in str(err)


@pytest.mark.parametrize(
    ("status", "cls"), [(400, BadRequestError), (500, ServerError), (503, ServerError)]
)
def test_status_errors_with_non_json_bodies(status: int, cls: type[ProviderError]) -> None:
    """An HTTP error whose body is not JSON still raises the right class, naming the body."""
    err = error_of(response(status, "<html>Bad gateway</html>", content_type="text/html"))
    assert type(err) is cls
    assert isinstance(err, ProviderError)
    assert err.status_code == status
    assert "text/html" in str(err)
    assert "Bad gateway" in err.body


def test_quota_spent_429_is_not_retryable() -> None:
    """A 429 with code 3036 (daily allocation spent) is a QuotaExceeded (a RateLimitError)
    not worth retrying."""
    err = error_of(response(429, failure((3036, "daily allocation spent"))))
    assert type(err) is QuotaExceeded
    assert isinstance(err, RateLimitError)
    assert err.retryable is False
    assert "daily allocation spent" in str(err)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "7"}, 7.0),
        ({"Retry-After": "2.5"}, 2.5),
        ({"retry-after-ms": "1500"}, 1.5),
        ({"retry-after-ms": "1500", "Retry-After": "9"}, 1.5),
        ({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, 0.0),
        ({"Retry-After": "soon"}, None),
        ({}, None),
    ],
)
def test_rate_limit_retry_after(headers: dict[str, str], expected: float | None) -> None:
    """Another 429 is retryable and carries the delay the host asked for."""
    err = error_of(response(429, failure((3040, "slow down")), headers=headers))
    assert type(err) is RateLimitError
    assert err.retryable is True
    assert err.retry_after == expected


def test_rate_limit_retry_after_http_date() -> None:
    """A Retry-After HTTP date in the future becomes the seconds until then."""
    when = email.utils.formatdate(time.time() + 120, usegmt=True)
    err = error_of(response(429, b"", content_type=None, headers={"Retry-After": when}))
    assert isinstance(err, RateLimitError)
    assert err.retry_after is not None
    assert 110 < err.retry_after <= 120


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_redirects_are_not_followed(status: int) -> None:
    """A redirect is an error that says it was not followed, so the key never goes elsewhere."""
    err = error_of(
        response(status, b"", content_type=None, headers={"location": "https://evil.example/"})
    )
    assert type(err) is ProviderError
    assert err.retryable is False
    assert "never follows redirects" in str(err)
    assert "https://evil.example/" in str(err)


# Success statuses that carry no usable image


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        pytest.param({"success": True, "result": {}}, JSON_TYPE, id="no-image-field"),
        pytest.param({"result": {"image_base64": ""}}, JSON_TYPE, id="empty-image-field"),
        pytest.param({"result": {"image_base64": None}}, JSON_TYPE, id="null-image-field"),
        pytest.param({}, JSON_TYPE, id="empty-object"),
        pytest.param('{"result": {"image_base64": "iVBO', JSON_TYPE, id="truncated-json"),
        pytest.param("not json at all", JSON_TYPE, id="invalid-json"),
        pytest.param({"result": 5}, JSON_TYPE, id="result-is-a-number"),
        pytest.param({"result": {"image_base64": 5}}, JSON_TYPE, id="image-is-a-number"),
        pytest.param([1, 2, 3], JSON_TYPE, id="json-array"),
        pytest.param({"result": {"image_base64": "!!not*base64!!"}}, JSON_TYPE, id="bad-base64"),
        pytest.param(
            {"result": {"image_base64": b64(b"hello, this is not an image")}},
            JSON_TYPE,
            id="base64-of-non-image",
        ),
        pytest.param("<html><body>Welcome</body></html>", "text/html", id="html-page"),
        pytest.param("<html><body>Welcome</body></html>", JSON_TYPE, id="html-as-json"),
        pytest.param(b"", "image/png", id="empty-raw-body"),
        pytest.param(PNG[:7], "image/png", id="truncated-png-signature"),
    ],
)
def test_invalid_success_responses(body: Any, content_type: str) -> None:
    """A 200 without a usable image is a retryable InvalidResponseError, never a crash."""
    err = error_of(response(200, body, content_type=content_type, headers={"x-request-id": "q"}))
    assert type(err) is InvalidResponseError
    # Well-formed JSON of another shape comes back the same on every try: not retried.
    assert err.retryable is ("unexpected shape" not in str(err))
    assert err.provider == "dataoorts"
    assert err.request_id == "q"


# Secrets


def test_key_not_in_provider_repr_or_str() -> None:
    """Printing or logging the provider never shows the key."""
    provider = Dataoorts(KEY)
    for text in (repr(provider), str(provider), repr(provider.api_key)):
        assert not leaks(text)
    assert "black-forest-labs/flux-1-schnell" in repr(provider)


def test_key_not_in_built_request_repr() -> None:
    """Logging the built HTTP request or its headers never shows the key."""
    req = Dataoorts(KEY).build_request(REQ)
    assert not leaks(repr(req))
    assert not leaks(repr(req.headers))


@pytest.mark.parametrize(
    ("status", "body", "content_type"),
    [
        (401, {"errors": [{"code": 10000, "message": f"bad key Bearer {KEY}"}]}, JSON_TYPE),
        (500, {"error": f"upstream rejected {KEY}"}, JSON_TYPE),
        (500, f"<p>token {KEY} invalid</p>", "text/html"),
        (429, failure((3036, f"quota spent for {KEY}")), JSON_TYPE),
        (200, failure((3007, f"timeout for key {KEY}")), JSON_TYPE),
        (200, f"{{oops {KEY}", JSON_TYPE),
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
    start = json.dumps(failure((1000, "MARK"))).index("MARK")
    body = failure((1000, "x" * (990 - start) + KEY))
    assert json.dumps(body).index(KEY) == 990
    err = error_of(response(status, body))
    assert isinstance(err, ProviderError)
    assert not leaks(err.body), err.body[-20:]


def test_key_straddling_invalid_json_quote_is_redacted() -> None:
    """An echoed key in a malformed JSON body is not quoted, even in part."""
    err = error_of(response(200, "{" + "x" * 190 + KEY))
    assert type(err) is InvalidResponseError
    assert not leaks(str(err)), str(err)


def test_key_at_start_of_raw_body_is_redacted() -> None:
    """A non-image raw body that starts with the echoed key is not quoted in the error."""
    err = error_of(response(200, f"{KEY} is not authorised", content_type="text/plain"))
    assert type(err) is InvalidResponseError
    assert not leaks(str(err)), str(err)


# End to end through FluxClient


@pytest.mark.anyio
async def test_end_to_end_through_client() -> None:
    """FluxClient sends the exact Dataoorts request and returns the decoded image."""
    with respx.mock(assert_all_called=True, assert_all_mocked=True) as router:
        route = router.post(URL).mock(
            return_value=httpx.Response(
                200,
                headers={"content-type": "application/json; charset=utf-8", "x-request-id": "e2e"},
                content=json.dumps(envelope(JPEG)).encode(),
            )
        )
        async with flux_sdk.FluxClient(Dataoorts(KEY)) as client:
            image = await client.generate("a tiny astronaut", seed=12345, steps=4)
    assert route.call_count == 1
    sent = route.calls.last.request
    assert sent.method == "POST"
    assert str(sent.url) == URL
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert sent.headers["content-type"] == "application/json"
    assert sent.headers["user-agent"].startswith("flux-sdk-python/")
    assert sent.content == (
        b'{"model":"black-forest-labs/flux-1-schnell",'
        b'"data":{"prompt":"a tiny astronaut","steps":4,"seed":12345}}'
    )
    assert image.data == JPEG
    assert image.media_type == "image/jpeg"
    assert image.provider == "dataoorts"
    assert image.seed == 12345
    assert image.attempts == 1
    assert image.elapsed >= 0
    assert image.request_id == "e2e"


@pytest.mark.anyio
async def test_end_to_end_error_through_client() -> None:
    """An HTTP error from the host reaches the caller as the mapped, redacted FluxError."""
    with respx.mock(assert_all_called=True, assert_all_mocked=True) as router:
        router.post(URL).mock(
            return_value=httpx.Response(401, json={"errors": [{"message": f"bad {KEY}"}]})
        )
        async with flux_sdk.FluxClient(Dataoorts(KEY)) as client:
            with pytest.raises(AuthenticationError) as info:
                await client.generate("a tiny astronaut")
    assert info.value.retryable is False
    assert not any(leaks(text) for text in error_texts(info.value))
