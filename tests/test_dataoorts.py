"""The Dataoorts adapter: the exact request it builds and how it reads every answer."""

from __future__ import annotations

import base64
import email.utils
import io
import json
import time
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
    ConfigError,
    Dataoorts,
    FluxError,
    GeneratedImage,
    GenerateRequest,
    InvalidRequestError,
    InvalidResponseError,
    ProviderError,
    QuotaExceeded,
    RateLimitError,
    ServerError,
)

from ._images import noise_png

KEY = "dk_SeCrEt_7f3a9c1e5b2d4f60aa"
URL = "https://cloud.dataoorts.com/api/v1"
FLUX = "black-forest-labs/flux-1-schnell"
SDXL = "stabilityai/stable-diffusion-xl-base-1.0"
JSON_TYPE = "application/json"


def _image(fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 40, 40)).save(buf, format=fmt)
    return buf.getvalue()


PNG, JPEG, WEBP = _image("PNG"), _image("JPEG"), _image("WEBP")
IMAGES = {"image/png": PNG, "image/jpeg": JPEG, "image/webp": WEBP}
REQ = GenerateRequest(prompt="a tiny astronaut", seed=7)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def envelope(image: bytes = PNG) -> dict[str, Any]:
    return {"errors": [], "messages": [], "result": {"image_base64": b64(image)}, "success": True}


def failure(*errors: tuple[int, str]) -> dict[str, Any]:
    return {
        "errors": [{"code": code, "message": message} for code, message in errors],
        "messages": [],
        "result": None,
        "success": False,
    }


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


def parse(resp: httpx.Response, provider: Dataoorts | None = None) -> GeneratedImage:
    return (provider or Dataoorts(KEY)).parse_response(REQ, resp)


def error_of(resp: httpx.Response) -> FluxError:
    with pytest.raises(FluxError) as info:
        parse(resp)
    return info.value


def leaks(text: str, secret: str = KEY, run: int = 8) -> bool:
    """Whether any ``run`` consecutive characters of ``secret`` appear in ``text``."""
    return any(secret[i : i + run] in text for i in range(len(secret) - run + 1))


def error_texts(exc: FluxError) -> list[str]:
    return [str(exc), repr(exc), str(getattr(exc, "body", ""))]


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


# Successful answers


@pytest.mark.parametrize("content_type", [JSON_TYPE, "application/json; charset=utf-8"])
@pytest.mark.parametrize("media_type", list(IMAGES))
def test_json_envelope_image(media_type: str, content_type: str) -> None:
    """A JSON envelope's base64 image is decoded and its type sniffed from the bytes."""
    data = IMAGES[media_type]
    image = parse(response(body=envelope(data), content_type=content_type))
    assert image.data == data
    assert image.media_type == media_type
    assert image.provider == "dataoorts"
    assert image.seed == 7
    assert image.request is REQ
    assert image.request_id is None


def test_json_envelope_without_the_bookkeeping_fields() -> None:
    """A bare ``{"result": {"image_base64": ...}}`` (the seed's form) is enough."""
    image = parse(response(body={"result": {"image_base64": b64(WEBP)}}))
    assert (image.data, image.media_type) == (WEBP, "image/webp")


def test_json_envelope_with_cloudflares_image_field() -> None:
    """``result.image`` (Cloudflare's name for the field, whose envelope Dataoorts copies)
    is read when ``result.image_base64`` is missing."""
    body = {"errors": [], "messages": [], "result": {"image": b64(JPEG)}, "success": True}
    image = parse(response(body=body))
    assert (image.data, image.media_type, image.provider) == (JPEG, "image/jpeg", "dataoorts")


def test_json_envelope_prefers_image_base64() -> None:
    """With both fields, Dataoorts' documented ``image_base64`` is the image."""
    body = {"result": {"image_base64": b64(PNG), "image": b64(JPEG)}, "success": True}
    assert parse(response(body=body)).data == PNG


def test_json_envelope_without_either_field_names_the_documented_one() -> None:
    """An envelope with neither field is a retryable invalid response naming
    ``result.image_base64``."""
    exc = error_of(response(body={"result": {}, "success": True}))
    assert isinstance(exc, InvalidResponseError)
    assert exc.retryable
    assert "result.image_base64" in str(exc)


@pytest.mark.parametrize(
    ("content_type", "data", "media_type"),
    [
        ("image/png", JPEG, "image/jpeg"),
        ("image/jpeg", WEBP, "image/webp"),
        ("image/webp", PNG, "image/png"),
        ("application/octet-stream", PNG, "image/png"),
        (None, JPEG, "image/jpeg"),
    ],
)
def test_raw_bytes_typed_by_content_not_header(
    content_type: str | None, data: bytes, media_type: str
) -> None:
    """A non-JSON body is the image itself, typed by its magic bytes, never by the header."""
    image = parse(response(body=data, content_type=content_type))
    assert (image.data, image.media_type) == (data, media_type)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(base64.encodebytes(PNG).decode(), id="line-breaks"),
        pytest.param("data:image/png;base64," + b64(PNG), id="data-url"),
        pytest.param("data:image/png;base64," + base64.encodebytes(PNG).decode(), id="both"),
    ],
)
def test_lenient_base64(text: str) -> None:
    """Base64 wrapped in lines or behind a ``data:`` URL prefix is accepted."""
    image = parse(response(body={"result": {"image_base64": text}}))
    assert image.data == PNG


@pytest.mark.parametrize("header", ["x-request-id", "cf-ray"])
def test_request_id_on_image(header: str) -> None:
    """The host's request id is kept on the image, for support tickets."""
    image = parse(response(body=envelope(), headers={header: "req-abc-123"}))
    assert image.request_id == "req-abc-123"


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


# The image decoded in place from the body (a shortcut that must read like the full parse)


# "image_base64" first as a value, then both names: the first name is the image.
SECOND_NAME_AFTER_A_DECOY = (
    '{"note": "image_base64", "result": {"image_base64": "@IMAGE@", "image": "@JPEG@"}}'
)
# Large enough (over 64 KiB of JSON) for the in-place read; small bodies parse whole.
BIG_PNG = noise_png(160)


def _raw(text: str, image: bytes = BIG_PNG) -> httpx.Response:
    """A JSON body written out by hand; ``@IMAGE@`` stands for the image's base64."""
    return response(body=text.replace("@IMAGE@", b64(image)).encode())


@pytest.mark.parametrize(
    "text",
    [
        pytest.param('{"result" : {"image_base64"\n:\t"@IMAGE@"}, "success": true}', id="spaces"),
        pytest.param(
            '{"meta": {"image_base64": "%s"}, "result": {"image_base64": "@IMAGE@"}}'.replace(
                "%s", b64(JPEG)
            ),
            id="same-key-elsewhere-first",
        ),
        pytest.param(
            '{"note": "say \\"image_base64\\": \\"QUJD\\"", "result": {"image_base64": "@IMAGE@"}}',
            id="key-quoted-in-a-string",
        ),
        pytest.param(
            '{"x\\"image_base64": "QUJD", "result": {"image_base64": "@IMAGE@"}}',
            id="key-ending-in-the-name",
        ),
        pytest.param(
            '{"result": {"image_base64": "@IMAGE@"}, "errors": [{"code": 1}]}', id="errors"
        ),
        pytest.param(
            SECOND_NAME_AFTER_A_DECOY.replace("@JPEG@", b64(JPEG)),
            id="first-name-only-as-a-value-then-the-second-name",
        ),
    ],
)
def test_image_is_the_result_field_whatever_the_layout(text: str) -> None:
    assert len(b64(BIG_PNG)) > 64 * 1024
    assert parse(_raw(text)).data == BIG_PNG


def test_escaped_slashes_in_base64_are_read() -> None:
    """Some JSON encoders write ``/`` as ``\\/``; the in-place shortcut cannot read it,
    the full parse does."""
    data = BIG_PNG
    assert "/" in b64(data)
    escaped = b64(data).replace("/", "\\/")
    image = parse(response(body=b'{"result": {"image_base64": "%s"}}' % escaped.encode()))
    assert image.data == data


def test_success_false_with_an_image_is_still_the_reported_failure() -> None:
    body = failure((3040, "out of capacity"))
    body["result"] = {"image_base64": b64(BIG_PNG)}
    exc = error_of(response(body=body))
    assert isinstance(exc, ProviderError)
    assert "out of capacity" in str(exc)


def test_invalid_json_around_a_valid_image_is_refused() -> None:
    exc = error_of(_raw('{"result": {"image_base64": "@IMAGE@"}'))  # no closing brace
    assert isinstance(exc, InvalidResponseError)
