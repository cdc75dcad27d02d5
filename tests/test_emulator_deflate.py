"""The emulator's PNG rows: a row equal to the one above is sent as a stored piece of
"Up"-filtered zeros, the rest through zlib, and the joined stream is one valid zlib
stream (its Adler-32 checked by zlib) of exactly the rows given."""

from __future__ import annotations

import random
import zlib

import pytest

from flux_sdk.emulator import render_png
from flux_sdk.emulator._deflate import RowStream

from ._emulator import decode


def unfiltered(stream: bytes, row_bytes: int) -> list[bytes]:
    raw = zlib.decompress(stream)  # checks the header, every block and the Adler-32
    rows: list[bytes] = []
    for start in range(0, len(raw), row_bytes + 1):
        kind, row = raw[start], raw[start + 1 : start + 1 + row_bytes]
        assert kind in (0, 2)
        rows.append(row if kind == 0 else rows[-1])
        if kind == 2:
            assert row == bytes(row_bytes)
    return rows


@pytest.mark.parametrize("seed", range(5))
def test_the_rows_come_back_exactly_whatever_their_runs(seed: int) -> None:
    draw = random.Random(seed)
    width = draw.choice([1, 7, 96, 3072])
    rows: list[bytes] = []
    stream = RowStream(width)
    for _ in range(draw.randrange(1, 600)):
        if rows and draw.random() < 0.7:
            for _ in range(draw.choice([1, 2, 3, 5, 9, 40, 300])):
                stream.repeat()
                rows.append(rows[-1])
        else:
            row = draw.randbytes(width) if draw.random() < 0.5 else bytes([seed]) * width
            stream.add(row)
            rows.append(row)
    assert unfiltered(stream.finish(), width) == rows


def test_a_large_picture_is_a_valid_png_and_much_smaller_than_its_pixels() -> None:
    png = render_png("a lighthouse at dawn", seed=None, steps=4, width=1024, height=1024)
    image = decode(png)
    assert (image.size, image.mode) == ((1024, 1024), "RGB")
    assert len(png) < 1024 * 1024 * 3 / 20
