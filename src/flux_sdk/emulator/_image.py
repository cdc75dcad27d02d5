"""Deterministic stand-in images: real PNG files drawn with the standard library only."""

from __future__ import annotations

import functools
import hashlib
import struct
import zlib

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Length, type and CRC around each chunk's data: the smallest amount a chunk can pad by.
_CHUNK_OVERHEAD = 12
# Lowercase first letter: ancillary, so every decoder may skip it; lowercase second: private.
_PAD_TYPE = b"flUx"


def render_png(
    prompt: str,
    *,
    seed: int | None,
    steps: int,
    width: int,
    height: int,
    target_bytes: int | None = None,
) -> bytes:
    """Draw a valid 8-bit RGB PNG whose look is fixed by the inputs.

    The same inputs always give the same bytes, and different inputs give visibly
    different pictures (colours, stripe width and pattern come from a hash of them), so
    tests can tell images apart the way they would tell real generations apart.

    ``target_bytes`` pads the file to exactly that size with an ancillary chunk of
    incompressible bytes, for benchmarks that need realistic 1-2 MB payloads. A padding
    chunk costs at least 12 bytes, so a target below the natural size plus 12 returns
    the natural PNG unpadded.
    """
    if width < 1 or height < 1:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    png = _natural_png(prompt, seed, steps, width, height)
    if target_bytes is None or target_bytes < len(png) + _CHUNK_OVERHEAD:
        return png
    padding = _padding_chunk(target_bytes - len(png) - _CHUNK_OVERHEAD)
    # IEND is the last 12 bytes; the padding goes just before it.
    return b"".join((png[:-_CHUNK_OVERHEAD], padding, png[-_CHUNK_OVERHEAD:]))


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(data, zlib.crc32(kind))
    return b"".join((struct.pack(">I", len(data)), kind, data, struct.pack(">I", crc)))


@functools.lru_cache(maxsize=64)
def _natural_png(prompt: str, seed: int | None, steps: int, width: int, height: int) -> bytes:
    # Benchmarks repeat prompts, hence the cache; only the small unpadded file is kept.
    digest = hashlib.sha256(repr((prompt, seed, steps, width, height)).encode()).digest()
    top, bottom = digest[0:3], digest[3:6]
    # XOR with 0x80 plus at most 0x3F moves every channel by 65 or more: always visible.
    contrast = bytes(0x80 | (b & 0x3F) for b in digest[6:9])
    period = 4 + digest[9] % 29  # stripe width in pixels
    style = digest[10] % 3  # vertical stripes, checkerboard or diagonal stripes
    row_bytes = 3 * width
    repeats = width // (2 * period) + 2  # long enough for any offset below
    span = max(height - 1, 1)
    rows: list[bytes] = []
    # One loop per row, never per pixel: each row is a slice of a repeated two-colour tile.
    for y in range(height):
        base = bytes((a * (span - y) + b * y) // span for a, b in zip(top, bottom, strict=True))
        alt = bytes(c ^ k for c, k in zip(base, contrast, strict=True))
        line = (base * period + alt * period) * repeats
        if style == 0:
            offset = 0
        elif style == 1:
            offset = (y // period) % 2 * period * 3
        else:
            offset = y % (2 * period) * 3
        rows += (b"\x00", line[offset : offset + row_bytes])  # filter type 0, then pixels
    raw = b"".join(rows)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return b"".join(
        (
            _SIGNATURE,
            _chunk(b"IHDR", header),
            _chunk(b"IDAT", zlib.compress(raw, 1)),  # level 1: speed over size
            _chunk(b"IEND", b""),
        )
    )


@functools.lru_cache(maxsize=4)
def _padding_chunk(size: int) -> bytes:
    # Pseudo-random so that transport compression cannot shrink a "2 MB" image.
    return _chunk(_PAD_TYPE, hashlib.shake_256(b"flux_sdk emulator padding").digest(size))
