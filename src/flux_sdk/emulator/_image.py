"""Deterministic stand-in images: real PNG files drawn with the standard library only.

Each picture shows the request it answers (prompt, seed, steps, size) on a panel inside
a frame, captioned as the emulator's stand-in, over a background fixed by the seed. A
person looking at a saved file therefore sees at once that it came from the emulator,
and which call made it.
"""

from __future__ import annotations

import functools
import hashlib
import struct
import textwrap
import zlib

from flux_sdk.emulator._deflate import RowStream
from flux_sdk.emulator._font import (
    ADVANCE,
    CELL_HEIGHT,
    GLYPH_HEIGHT,
    GLYPH_WIDTH,
    glyph_rows,
    printable,
)

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Length, type and CRC around each chunk's data: the smallest amount a chunk can pad by.
_CHUNK_OVERHEAD = 12
# Lowercase first letter: ancillary, so every decoder may skip it; lowercase second: private.
_PAD_TYPE = b"flUx"
CAPTIONS = ("FLUX_SDK EMULATOR - NOT A REAL MODEL", "FLUX_SDK EMULATOR", "EMULATOR")
_ELLIPSIS = "..."  # ASCII: the font has no single-character ellipsis
_LINE_PITCH = CELL_HEIGHT + 1  # rows of a text line: the cell and one row of leading
_MIN_PANEL = 24  # below this many pixels a side, the picture is the background alone

# One overlay: at byte offset x of row y, these pixel bytes replace the panel's.
_Overlay = dict[int, list[tuple[int, bytes]]]


def render_png(
    prompt: str,
    *,
    seed: int | None,
    steps: int,
    width: int,
    height: int,
    target_bytes: int | None = None,
) -> bytes:
    """Draw a valid 8-bit RGB PNG that shows the request, fixed by the inputs.

    The prompt (word-wrapped, cut with ``...`` when it does not fit), the seed, the steps
    and the size are written in a 5x7 bitmap font scaled to the image, on a framed panel
    captioned ``FLUX_SDK EMULATOR - NOT A REAL MODEL``. The background's colours and
    pattern come from the seed, so different seeds look different at a glance. The same
    inputs always give the same bytes, so tests can compute the image they expect.
    Characters outside printable ASCII are drawn as ``?``; images too small for a
    panel show the background alone.

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
    digest = hashlib.sha256(repr(("flux_sdk emulator", seed)).encode()).digest()
    background = _Background(digest, width, height)
    ink = bytes(c // 6 for c in digest[3:6])  # dark, whatever the seed
    paper = bytes(216 + c % 40 for c in digest[0:3])  # light, tinted like the background
    side = min(width, height)
    stream = RowStream(3 * width)
    looks = background.looks(height)
    if side < _MIN_PANEL:
        for look in looks:
            stream.add(background.line(*look))
    else:
        margin = max(2, side // 24)
        frame = max(1, side // 256)
        left, top, right, bottom = margin, margin, width - margin, height - margin
        overlay = _layout(
            prompt, seed, steps, width, height, (left, top, right, bottom), ink, paper
        )
        panel_width = right - left
        solid = ink * panel_width
        inside = ink * frame + paper * (panel_width - 2 * frame) + ink * frame
        before: object = None
        # One pass per row, never per pixel: whole runs of pixels are slices. A row is
        # built only when it differs from the one above (see RowStream).
        for y, look in enumerate(looks):
            if not top <= y < bottom:
                key: object = (look, None)
                if key == before:
                    stream.repeat()
                    continue
                stream.add(background.line(*look))
                before = key
                continue
            edge = y < top + frame or y >= bottom - frame
            pieces = overlay.get(y, ())
            key = (look, edge, pieces)
            if key == before:
                stream.repeat()
                continue
            before = key
            row = bytearray(background.line(*look))
            row[3 * left : 3 * right] = solid if edge else inside
            for x, pixels in pieces:
                row[x : x + len(pixels)] = pixels
            stream.add(bytes(row))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return b"".join(
        (
            _SIGNATURE,
            _chunk(b"IHDR", header),
            _chunk(b"IDAT", stream.finish()),
            _chunk(b"IEND", b""),
        )
    )


class _Background:
    """Stripes, a checkerboard or diagonals over a vertical gradient, all from the seed."""

    def __init__(self, digest: bytes, width: int, height: int) -> None:
        self.top, self.bottom = digest[6:9], digest[9:12]
        # XOR with 0x80 plus at most 0x3F moves every channel by 65 or more: always visible.
        self.contrast = bytes(0x80 | (b & 0x3F) for b in digest[12:15])
        self.period = 4 + digest[15] % 29  # stripe width in pixels
        self.style = digest[16] % 3
        self.row_bytes = 3 * width
        self.repeats = width // (2 * self.period) + 2  # long enough for any offset below
        self.span = max(height - 1, 1)
        self._patterns: dict[tuple[int, ...], bytes] = {}  # by colour: rows share them

    def looks(self, height: int) -> list[tuple[tuple[int, ...], int]]:
        """Each row's gradient colour and pattern offset: equal looks, equal rows."""
        span, period = self.span, self.period
        channels = [
            [(a * (span - y) + b * y) // span for y in range(height)]
            for a, b in zip(self.top, self.bottom, strict=True)
        ]
        if self.style == 0:
            offsets = [0] * height
        elif self.style == 1:
            offsets = [(y // period) % 2 * period * 3 for y in range(height)]
        else:
            offsets = [y % (2 * period) * 3 for y in range(height)]
        return list(zip(zip(*channels, strict=True), offsets, strict=True))

    def line(self, colour: tuple[int, ...], offset: int) -> bytes:
        """The row of that look."""
        pattern = self._patterns.get(colour)
        if pattern is None:
            base = bytes(colour)
            alt = bytes(c ^ k for c, k in zip(base, self.contrast, strict=True))
            pattern = (base * self.period + alt * self.period) * self.repeats
            self._patterns[colour] = pattern
        return pattern[offset : offset + self.row_bytes]


def _layout(
    prompt: str,
    seed: int | None,
    steps: int,
    width: int,
    height: int,
    panel: tuple[int, int, int, int],
    ink: bytes,
    paper: bytes,
) -> _Overlay:
    """Place the request's text on the panel: details on top, caption below, prompt between."""
    left, top, right, bottom = panel
    side = min(width, height)
    pad = max(1, side // 256) + max(1, side // 48)  # the frame, then some air
    x0, x1, y0, y1 = left + pad, right - pad, top + pad, bottom - pad
    room = x1 - x0
    small = max(1, side // 250)  # the scale of the caption and the details line
    overlay: _Overlay = {}
    caption = next((c for c in CAPTIONS if _text_width(c, 1) <= room), None)
    if caption is None:
        return overlay
    scale = _fit_scale(caption, room, small)
    y1 -= GLYPH_HEIGHT * scale
    _draw(overlay, caption, (x0 + x1) // 2, y1, scale, ink, paper, rows=GLYPH_HEIGHT)
    seed_text = "none" if seed is None else str(seed)
    details = next(
        (
            d
            for d in (
                f"seed {seed_text}  steps {steps}  {width}x{height}",
                f"seed {seed_text} steps {steps}",
                f"s{seed_text}",
            )
            if _text_width(d, 1) <= room
        ),
        "",
    )
    scale = _fit_scale(details, room, small)
    if details and y1 - y0 >= 3 * _LINE_PITCH * scale:
        _draw(overlay, details, (x0 + x1) // 2, y0, scale, ink, paper)
        y0 += _LINE_PITCH * scale
        rule = max(1, scale // 2)  # a line between the details and the prompt
        for y in range(y0, y0 + rule):
            overlay.setdefault(y, []).append((3 * x0, ink * room))
        y0 += rule + 2 * scale
    y1 -= 2 * small
    lines, scale = _wrap_prompt(printable(prompt), room, y1 - y0, side)
    block = (len(lines) * _LINE_PITCH - 1) * scale
    y = y0 + max(0, (y1 - y0 - block) // 2)
    for line in lines:
        _draw(overlay, line, (x0 + x1) // 2, y, scale, ink, paper)
        y += _LINE_PITCH * scale
    return overlay


def _wrap_prompt(text: str, room: int, space: int, side: int) -> tuple[list[str], int]:
    """The largest scale at which the whole prompt fits, else the smallest scale, cut."""
    largest, smallest = max(1, side // 100), max(1, side // 512)
    for scale in range(largest, smallest - 1, -1):
        columns = (room + scale) // (ADVANCE * scale)
        rows = (space + scale) // (_LINE_PITCH * scale)
        if columns < 1 or rows < 1:
            continue
        lines = textwrap.wrap(text, columns) or [""]
        if len(lines) <= rows:
            return lines, scale
    scale = smallest
    columns = max(len(_ELLIPSIS) + 1, (room + scale) // (ADVANCE * scale))
    rows = max(0, (space + scale) // (_LINE_PITCH * scale))
    if rows == 0:
        return [], scale
    return textwrap.wrap(text, columns, max_lines=rows, placeholder=_ELLIPSIS), scale


def _text_width(text: str, scale: int) -> int:
    return (len(text) * ADVANCE - 1) * scale


def _fit_scale(text: str, room: int, scale: int) -> int:
    while scale > 1 and _text_width(text, scale) > room:
        scale -= 1
    return scale


def _draw(
    overlay: _Overlay,
    text: str,
    centre: int,
    y: int,
    scale: int,
    ink: bytes,
    paper: bytes,
    *,
    rows: int = CELL_HEIGHT,
) -> None:
    """Add ``text`` centred on ``centre``, its top at row ``y``, to the overlay.

    ``rows`` of each cell are drawn: ``GLYPH_HEIGHT`` leaves out the descender rows, for
    text with no descenders that sits right above the frame.
    """
    x = centre - _text_width(text, scale) // 2
    pieces = _pieces(scale, ink, paper)
    glyphs = [glyph_rows(c) for c in text]
    for row in range(rows):
        pixels = b"".join([pieces[g[row]] for g in glyphs])[: 3 * _text_width(text, scale)]
        for dy in range(scale):
            overlay.setdefault(y + row * scale + dy, []).append((3 * x, pixels))


@functools.lru_cache(maxsize=32)
def _pieces(scale: int, ink: bytes, paper: bytes) -> tuple[bytes, ...]:
    """Every one of the 32 glyph rows as scaled pixels, with the gap column after it."""
    return tuple(
        b"".join(
            (ink if bits >> (GLYPH_WIDTH - 1 - i) & 1 else paper) * scale
            for i in range(GLYPH_WIDTH)
        )
        + paper * scale
        for bits in range(1 << GLYPH_WIDTH)
    )


@functools.lru_cache(maxsize=4)
def _padding_chunk(size: int) -> bytes:
    # Pseudo-random so that transport compression cannot shrink a "2 MB" image.
    return _chunk(_PAD_TYPE, hashlib.shake_256(b"flux_sdk emulator padding").digest(size))
