"""Bounded decoding of compressed bodies: gzip and deflate, never past the room left.

httpx's own decoder inflates each chunk whole, so a few kilobytes of gzip arriving
together could become gigabytes before any size check; these decoders stop as soon as
the cap is passed.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import httpx

__all__ = ["Inflater", "accepted_encodings", "inflate", "inflaters"]

_INFLATE_STEP = 64 * 1024
# Each layer holds a 32 KiB window; urllib3 stops at five layers too.
_MAX_ENCODING_LAYERS = 5
_DECODED_HERE = frozenset({"gzip", "x-gzip", "deflate", "identity"})


class Inflater:
    """One gzip or deflate layer of a body, inflated at most ``_INFLATE_STEP`` bytes a call."""

    def __init__(self, coding: str) -> None:
        deflate = coding == "deflate"
        self._zlib = zlib.decompressobj(zlib.MAX_WBITS if deflate else zlib.MAX_WBITS | 16)
        # "deflate" means zlib-wrapped, but some servers send raw deflate, as httpx and
        # browsers allow: the input is kept until the 2-byte zlib header has been checked,
        # so a body that fails that check can be read again as raw deflate.
        self._head: bytes | None = b"" if deflate else None
        self.tail = b""

    def inflate(self, data: bytes) -> bytes:
        """Up to ``_INFLATE_STEP`` bytes out of ``data``; input left over goes to ``tail``."""
        try:
            out = self._zlib.decompress(data, _INFLATE_STEP)
        except zlib.error as exc:
            if self._head is None:
                raise httpx.DecodingError(str(exc)) from exc
            data, self._head = self._head + data, None
            self._zlib = zlib.decompressobj(-zlib.MAX_WBITS)
            return self.inflate(data)
        if self._head is not None:
            self._head += data
            if len(self._head) >= 2:
                self._head = None  # the header passed: this is zlib-wrapped deflate
        self.tail = self._zlib.unconsumed_tail
        return out


def inflaters(codings: list[str]) -> list[Inflater]:
    """The decoders for a ``Content-Encoding`` list, the last one applied first.

    Unknown codings pass through undecoded, as httpx does; br and zstd are refused
    because they were not asked for and cannot be inflated within a bound here.
    """
    layers = []
    for coding in reversed(codings):
        coding = coding.strip().lower()
        if coding in ("gzip", "x-gzip", "deflate"):
            layers.append(Inflater(coding))
        elif coding in ("br", "zstd"):
            raise httpx.DecodingError(
                f"it is {coding}-encoded, which flux_sdk does not ask for or decode"
            )
    if len(layers) > _MAX_ENCODING_LAYERS:
        raise httpx.DecodingError(f"it has {len(layers)} layers of compression")
    return layers


def inflate(layers: Sequence[Inflater], data: bytes, room: int, out: list[bytes]) -> int:
    """Decode ``data`` through ``layers`` into ``out``; return how many bytes were added.

    It stops as soon as more than ``room`` bytes have come out, so whatever a body's
    compression ratio, ``out`` grows by at most ``room + _INFLATE_STEP`` bytes.
    """
    if not layers:
        out.append(data)
        return len(data)
    layer, rest = layers[0], layers[1:]
    produced = 0
    while True:
        piece = layer.inflate(data)
        data = layer.tail
        if piece:
            produced += inflate(rest, piece, room - produced, out)
            if produced > room:
                return produced
        if not data and len(piece) < _INFLATE_STEP:
            # All input used and the output not full: nothing is pending inside zlib.
            return produced


def accepted_encodings(value: str) -> str:
    """An ``Accept-Encoding`` value without the codings `inflaters` refuses."""
    kept = [
        item.strip()
        for item in value.split(",")
        if item.split(";")[0].strip().lower() in _DECODED_HERE
    ]
    return ", ".join(kept) or "identity"
