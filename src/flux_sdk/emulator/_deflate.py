"""A PNG's image data, compressed without compressing the same row twice.

The emulator's pictures repeat rows: a gradient moves by one level every few rows, and
each row of a glyph is drawn ``scale`` times. zlib spends the same time on a row however
alike it is, about 3 ms per megabyte, which for 1024x1024 images was most of the time
an emulated host spent per image. So a row equal to the one above is sent with PNG's
"Up" filter (all zeros) as a piece of deflate stream compressed once and kept, and
only the other rows go through zlib. Each piece ends on a full flush, so the pieces can
be joined; the stream's Adler-32 is combined from theirs. The bytes are fixed by the
rows alone, so equal images are equal files.
"""

from __future__ import annotations

import functools
import struct
import zlib

__all__ = ["RowStream"]

_BASE = 65521  # Adler-32's modulus
# A zlib header (deflate, 32 KiB window, fastest) and a final, empty fixed-Huffman block.
_HEADER = b"\x78\x01"
_LAST_BLOCK = b"\x03\x00"
# Shorter runs of repeated rows go through zlib with their neighbours: a piece of their
# own would cost more in compressor set-up than the rows do.
_SHORTEST_PIECE = 4


def _combine(first: int, second: int, length: int) -> int:
    """The Adler-32 of two pieces of data joined, from theirs and the second's length
    (zlib's ``adler32_combine``)."""
    rem = length % _BASE
    sum1 = first & 0xFFFF
    sum2 = (rem * sum1) % _BASE
    sum1 += (second & 0xFFFF) + _BASE - 1
    sum2 += ((first >> 16) & 0xFFFF) + ((second >> 16) & 0xFFFF) + _BASE - rem
    sum1 %= _BASE
    sum2 %= _BASE
    return sum1 | (sum2 << 16)


def _piece(data: bytes) -> bytes:
    """``data`` as raw deflate blocks ending on a full flush: joinable with any other."""
    compressor = zlib.compressobj(1, zlib.DEFLATED, -15)
    return compressor.compress(data) + compressor.flush(zlib.Z_FULL_FLUSH)


@functools.lru_cache(maxsize=64)
def _repeats(row_bytes: int, count: int) -> tuple[bytes, int, int]:
    """``count`` rows of ``row_bytes`` each equal to the row above: compressed, their
    Adler-32 and their length."""
    data = (b"\x02" + bytes(row_bytes)) * count  # filter "Up": the difference, all zeros
    return _piece(data), zlib.adler32(data), len(data)


class RowStream:
    """The zlib stream of a PNG's rows, given in order with ``add`` or ``repeat``."""

    def __init__(self, row_bytes: int) -> None:
        self._row_bytes = row_bytes
        self._pieces: list[bytes] = []
        self._pending: list[bytes] = []
        self._repeated = 0
        self._adler = 1
        self._up = b"\x02" + bytes(row_bytes)  # a row equal to the one above, filtered

    def add(self, row: bytes) -> None:
        """The next row, unfiltered."""
        self._end_repeats()
        self._pending += (b"\x00", row)

    def repeat(self) -> None:
        """The next row is the same as the one before it."""
        self._repeated += 1

    def finish(self) -> bytes:
        """The whole zlib stream."""
        self._end_repeats()
        self._compress_pending()
        return b"".join((_HEADER, *self._pieces, _LAST_BLOCK, struct.pack(">I", self._adler)))

    def _end_repeats(self) -> None:
        if not self._repeated:
            return
        count, self._repeated = self._repeated, 0
        if count < _SHORTEST_PIECE:
            self._pending += [self._up] * count
            return
        self._compress_pending()
        size = 1
        while count:  # in pieces of 1, 2, 4, ... rows, so few lengths are ever kept
            if count & size:
                piece, adler, length = _repeats(self._row_bytes, size)
                self._append(piece, adler, length)
                count -= size
            size <<= 1

    def _compress_pending(self) -> None:
        if self._pending:
            data = b"".join(self._pending)
            self._pending = []
            self._append(_piece(data), zlib.adler32(data), len(data))

    def _append(self, piece: bytes, adler: int, length: int) -> None:
        self._pieces.append(piece)
        self._adler = _combine(self._adler, adler, length)
