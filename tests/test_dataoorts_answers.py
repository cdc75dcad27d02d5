"""How the Dataoorts adapter reads successful answers, including the in-place image read."""

from __future__ import annotations

import base64

import httpx
import pytest

from flux_sdk import InvalidResponseError, ProviderError

from ._dataoorts import JPEG, PNG, REQ, WEBP, envelope, error_of, failure, parse
from ._images import noise_png
from ._wire import JSON_TYPE, b64, response

IMAGES = {"image/png": PNG, "image/jpeg": JPEG, "image/webp": WEBP}


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
