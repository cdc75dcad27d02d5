"""The emulator's stand-in pictures: valid PNG files that show the request they answer."""

from __future__ import annotations

import struct
import zlib
from typing import Any

import pytest

from flux_sdk.emulator import render_png
from flux_sdk.emulator._font import glyph_rows, printable

from ._emulator import chunks, decode

pytestmark = pytest.mark.anyio


async def test_render_png_is_a_valid_8_bit_rgb_png() -> None:
    """Any PNG reader accepts the image: signature, IHDR, IDAT, IEND and CRCs are right."""
    png = render_png("a red fox", seed=7, steps=4, width=96, height=64)
    found = chunks(png)
    assert [kind for kind, _ in found] == [b"IHDR", b"IDAT", b"IEND"]
    assert struct.unpack(">IIBBBBB", found[0][1]) == (96, 64, 8, 2, 0, 0, 0)
    image = decode(png)
    assert (image.size, image.mode) == ((96, 64), "RGB")
    assert len(image.getcolors(maxcolors=96 * 64) or []) > 2  # a pattern, not a flat fill


@pytest.mark.parametrize(
    "change",
    [{"prompt": "a blue fox"}, {"seed": 8}, {"seed": None}, {"steps": 5}, {"width": 112}],
)
async def test_render_png_is_deterministic_and_input_sensitive(change: dict[str, Any]) -> None:
    """Equal inputs give equal bytes, and changing any input changes the picture itself."""
    inputs: dict[str, Any] = {"prompt": "a red fox", "seed": 7, "steps": 4, "width": 96}
    first = render_png(**inputs, height=64)
    assert render_png(**inputs, height=64) == first
    other = render_png(**{**inputs, **change}, height=64)
    assert decode(other).tobytes() != decode(first).tobytes()


async def test_render_png_pads_to_exact_size_with_incompressible_private_chunk() -> None:
    """Benchmarks get exactly the size they ask for, still decodable, not shrinkable by gzip."""
    plain = render_png("a red fox", seed=7, steps=4, width=96, height=64)
    padded = render_png("a red fox", seed=7, steps=4, width=96, height=64, target_bytes=2_000_000)
    assert len(padded) == 2_000_000
    assert [kind for kind, _ in chunks(padded)] == [b"IHDR", b"IDAT", b"flUx", b"IEND"]
    assert decode(padded).tobytes() == decode(plain).tobytes()
    assert len(zlib.compress(padded)) > 0.99 * len(padded)


@pytest.mark.parametrize("offset", [-1, 0, 11])
async def test_render_png_leaves_image_unpadded_when_target_is_too_small(offset: int) -> None:
    """A target the image already fills (or that no 12-byte chunk fits) returns it as is."""
    fox = {"seed": 7, "steps": 4, "width": 96, "height": 64}
    plain = render_png("a red fox", **fox)
    target = len(plain) + offset
    assert render_png("a red fox", **fox, target_bytes=target) == plain
    padded = render_png("a red fox", **fox, target_bytes=target + 1)
    assert len(padded) == (target + 1 if offset == 11 else len(plain))


@pytest.mark.parametrize(("width", "height"), [(0, 64), (64, 0), (-16, 64)])
async def test_render_png_refuses_empty_sizes(width: int, height: int) -> None:
    """An impossible size is a clear ValueError rather than a broken file."""
    with pytest.raises(ValueError, match="positive"):
        render_png("a red fox", seed=7, steps=4, width=width, height=height)


async def test_every_printable_character_has_its_own_glyph() -> None:
    """The font draws all 95 printable ASCII characters, each distinctly; space is blank."""
    glyphs = [glyph_rows(chr(code)) for code in range(0x20, 0x7F)]
    assert len(set(glyphs)) == 95
    assert not any(glyphs[0])
    assert all(any(glyph) for glyph in glyphs[1:])


async def test_characters_the_font_lacks_are_drawn_as_question_marks() -> None:
    """Non-ASCII and control characters show as '?', whitespace as a space."""
    assert printable("caf\u00e9 \u2013 \U0001f98a\x00x\ty\nz") == "caf? ? ??x y z"
    fox = {"seed": 7, "steps": 4, "width": 256, "height": 256}
    assert render_png("caf\u00e9\nau lait", **fox) == render_png("caf? au lait", **fox)


async def test_a_prompt_too_long_to_show_is_cut_and_its_tail_not_drawn() -> None:
    """Past what fits, the prompt is cut (with an ellipsis): its end changes nothing."""
    fox = {"seed": 7, "steps": 4, "width": 256, "height": 256}
    long = "a red fox in the snow " * 40
    assert render_png(long + "at dawn", **fox) == render_png(long + "at dusk", **fox)
    assert render_png("a red fox at dawn", **fox) != render_png("a red fox at dusk", **fox)


async def test_the_background_comes_from_the_seed() -> None:
    """Outside the panel, the seed alone sets the picture: other prompts share it."""
    size = {"steps": 4, "width": 256, "height": 256}
    margin = 256 // 24

    def border(prompt: str, seed: int | None) -> bytes:
        image = decode(render_png(prompt, seed=seed, **size))
        return image.crop((0, 0, 256, margin)).tobytes()

    assert border("a red fox", 7) == border("a lighthouse at dawn", 7)
    assert border("a red fox", 7) != border("a red fox", 8)
    assert border("a red fox", None) != border("a red fox", 0)


@pytest.mark.parametrize(
    ("width", "height"), [(1, 1), (8, 8), (23, 64), (24, 24), (64, 64), (2048, 64), (64, 400)]
)
async def test_any_size_gives_a_valid_picture(width: int, height: int) -> None:
    """Sizes too small for the text still give a valid picture of the requested size."""
    image = decode(render_png("a red fox " * 50, seed=1, steps=4, width=width, height=height))
    assert image.size == (width, height)


async def test_the_panel_holds_dark_text_on_light_paper() -> None:
    """The text is ink on a light panel: readable whatever colours the seed picks."""
    for seed in range(8):
        image = decode(render_png("a red fox", seed=seed, steps=4, width=256, height=256))
        found = image.crop((40, 40, 216, 216)).getcolors(65536) or []
        brightness = sorted(sum(colour) for _, colour in found if isinstance(colour, tuple))
        assert len(brightness) == len(found) == 2  # paper and ink, nothing else in the frame
        dark, light = brightness
        assert light - dark > 500
