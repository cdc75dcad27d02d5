"""GenerateRequest validation and GeneratedImage's bytes, saving and views."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest

from flux_sdk import (
    GeneratedImage,
    GenerateRequest,
    InvalidRequestError,
    InvalidResponseError,
    sniff_media_type,
)

from ._images import image_bytes

PNG, JPEG, WEBP = (image_bytes(f, color=(200, 30, 90)) for f in ("PNG", "JPEG", "WEBP"))


def _image(data: bytes = PNG, **request: Any) -> GeneratedImage:
    req = GenerateRequest(prompt="a red square", **request)
    return GeneratedImage.from_data(data, provider="test", request=req)


# GenerateRequest


def test_request_keeps_the_fields_given() -> None:
    """A valid request carries exactly what the caller set, and nothing else."""
    request = GenerateRequest(
        prompt="a cat", seed=7, steps=4, width=1024, height=768, extra_body={"prompt2": "x"}
    )
    assert request.model_dump() == {
        "prompt": "a cat",
        "seed": 7,
        "steps": 4,
        "width": 1024,
        "height": 768,
        "extra_body": {"prompt2": "x"},
    }


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"prompt": ""}, "prompt"),
        ({"prompt": "   \n"}, "blank"),
        ({"prompt": "a\x00b"}, "NUL"),
        ({"prompt": "bad \ud800 surrogate"}, "prompt"),
        ({"prompt": "x" * 20_001}, "prompt"),
        ({"prompt": 42}, "valid string"),
        ({"prompt": None}, "prompt"),
        ({}, "prompt: Field required"),
        ({"prompt": "ok", "seed": -1}, "seed"),
        ({"prompt": "ok", "seed": 2**63}, "seed"),
        ({"prompt": "ok", "seed": True}, "seed"),
        ({"prompt": "ok", "seed": "12345"}, "seed"),
        ({"prompt": "ok", "seed": 7.0}, "seed"),
        ({"prompt": "ok", "steps": 0}, "steps"),
        ({"prompt": "ok", "steps": "4"}, "steps"),
        ({"prompt": "ok", "width": 0}, "width"),
        ({"prompt": "ok", "height": 10**6}, "height"),
        ({"prompt": "ok", "extra_body": {"x": float("nan")}}, "JSON cannot carry"),
        ({"prompt": "ok", "extra_body": {"x": [1, {"y": float("inf")}]}}, "JSON cannot carry"),
        ({"prompt": "ok", "extra_body": {"x": object()}}, "extra"),
        ({"prompt": "ok", "extra_body": {"": 1}}, "empty key"),
        ({"prompt": "ok", "sede": 3}, "sede"),
    ],
)
def test_bad_fields_raise_invalid_request_naming_the_field(
    fields: dict[str, Any], needle: str
) -> None:
    """Every bad value is an InvalidRequestError (a ValueError) that names what is wrong."""
    with pytest.raises(InvalidRequestError) as caught:
        GenerateRequest(**fields)
    assert isinstance(caught.value, ValueError)
    assert needle in str(caught.value)
    assert caught.value.retryable is False


def test_error_message_does_not_echo_a_huge_prompt() -> None:
    """A rejected 20 kB prompt gives a short message, not the prompt back."""
    with pytest.raises(InvalidRequestError) as caught:
        GenerateRequest(prompt="y" * 30_000)
    assert len(str(caught.value)) < 300


def test_request_is_frozen_and_replace_validates() -> None:
    """A request cannot change in place; replace() gives a checked copy."""
    request = GenerateRequest(prompt="a cat", seed=1)
    with pytest.raises(AttributeError, match="replace"):
        request.seed = 2  # type: ignore[misc]
    assert request.replace(seed=2).seed == 2
    assert request.seed == 1
    with pytest.raises(InvalidRequestError, match="seed"):
        request.replace(seed=-3)


def test_unicode_prompts_are_accepted() -> None:
    """Non-ASCII prompts (accents, CJK, emoji) are valid requests."""
    assert GenerateRequest(prompt="un chat sur la lune, 月の猫 🐱").prompt.endswith("🐱")


# sniffing


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (PNG, "image/png"),
        (JPEG, "image/jpeg"),
        (WEBP, "image/webp"),
        (b"", None),
        (b"<html><body>502 Bad Gateway</body></html>", None),
        (b'{"result": {}}', None),
        (b"\x89PNG\r\n\x1a\n", None),  # a signature alone is not an image
        (b"RIFF\x00\x00\x00\x00WAVE", None),
    ],
)
def test_media_type_comes_from_magic_bytes(data: bytes, expected: str | None) -> None:
    """The type is read from the bytes, so a wrong header or extension cannot mislead it."""
    assert sniff_media_type(data) == expected


def test_from_data_refuses_bytes_that_are_not_an_image() -> None:
    """An HTML page where an image should be is an InvalidResponseError, never a .png file."""
    with pytest.raises(InvalidResponseError, match="not a PNG, JPEG or WebP") as caught:
        _image(b"<html>oops</html>")
    assert caught.value.retryable is True


# GeneratedImage


@pytest.mark.parametrize(
    ("data", "name", "expected"),
    [
        (WEBP, "astronaut", "astronaut.webp"),
        (PNG, "astronaut", "astronaut.png"),
        (JPEG, "astronaut", "astronaut.jpg"),
        (PNG, "astronaut.v2", "astronaut.v2.png"),
        (JPEG, "photo.JPEG", "photo.JPEG"),
        (PNG, "kept.jpg", "kept.jpg"),
    ],
)
def test_save_adds_the_right_extension_only_when_missing(
    tmp_path: Path, data: bytes, name: str, expected: str
) -> None:
    """save() names the file for its real type unless the caller gave an image extension."""
    saved = _image(data).save(tmp_path / name)
    assert saved == tmp_path / expected
    assert saved.read_bytes() == data


def test_save_accepts_str_paths_and_creates_parents(tmp_path: Path) -> None:
    """save('out/dir/cat') works without the directory existing first."""
    saved = _image().save(str(tmp_path / "out" / "dir" / "cat"))
    assert saved.read_bytes() == PNG


def test_save_leaves_no_temp_file_behind(tmp_path: Path) -> None:
    """After a save the directory holds only the image: no temp or partial files."""
    _image().save(tmp_path / "one")
    _image().save(tmp_path / "one")  # overwriting is atomic too
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one.png"]


def test_failed_save_leaves_neither_partial_nor_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If the final rename fails, the target is untouched and the temp file is removed."""
    (tmp_path / "cat.png").write_bytes(b"old image")

    def broken_replace(src: Any, dst: Any) -> None:
        raise OSError("disk on fire")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk on fire"):
        _image().save(tmp_path / "cat")
    assert [p.name for p in tmp_path.iterdir()] == ["cat.png"]
    assert (tmp_path / "cat.png").read_bytes() == b"old image"


def test_saved_file_mode_follows_the_umask(tmp_path: Path) -> None:
    """A saved image is readable like any file the user creates, not private 0600."""
    old = os.umask(0o022)
    try:
        saved = _image().save(tmp_path / "cat")
    finally:
        os.umask(old)
    assert stat.S_IMODE(saved.stat().st_mode) == 0o644


@pytest.mark.anyio
async def test_asave_writes_from_a_worker_thread(tmp_path: Path) -> None:
    """asave() saves the same bytes without blocking the event loop."""
    saved = await _image(JPEG).asave(tmp_path / "async")
    assert saved.name == "async.jpg"
    assert saved.read_bytes() == JPEG


def test_views_of_the_image() -> None:
    """base64() and to_pil() give the same picture the bytes hold."""
    image = _image(PNG)
    import base64

    assert base64.b64decode(image.base64()) == PNG
    assert image.to_pil().size == (4, 4)
    assert image.extension == ".png"


def test_repr_is_short_and_shows_no_bytes() -> None:
    """repr() of a multi-megabyte image is one short line without the data."""
    from flux_sdk.emulator import render_png

    big = render_png("a fox", seed=9, steps=4, width=8, height=8, target_bytes=2_000_000)
    image = _image(big, seed=9)
    text = repr(image)
    assert len(text) < 250
    assert "seed=9" in text
    assert "image/png" in text


def test_seed_defaults_to_the_requested_seed() -> None:
    """An image reports the seed it was asked for when the provider does not say."""
    assert _image(seed=42).seed == 42
