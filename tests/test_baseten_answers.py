"""How the Baseten adapter reads successful answers."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from ._baseten import JPEG, PNG, REQ, WEBP, parse
from ._wire import b64, response

IMAGES = {"image/png": PNG, "image/jpeg": JPEG, "image/webp": WEBP}


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
