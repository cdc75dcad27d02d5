"""Is an image whole? A structural check of PNG, JPEG and WebP bytes, without decoding.

A body cut off mid-way (a 200 without ``Content-Length`` whose connection dropped)
still starts with the right magic bytes, so the magic alone would let half an image
through as a success, and a resumed batch would then skip it forever. Each format
says where it ends, so checking costs a walk over chunk headers, not a decode:

- PNG: the chunks are walked by their lengths from the signature to ``IEND``, which
  must end exactly at the end of the data, with its fixed CRC.
- JPEG: the marker segments are walked by their lengths from ``SOI`` to the first
  ``SOS``; the data must then end with ``EOI`` (``FF D9``). Inside the entropy-coded
  data a ``FF`` byte is always followed by ``00`` or a restart marker, so a cut there
  cannot end in ``FF D9`` by chance. (Appended bytes that themselves end in ``FF D9``,
  a second JPEG, say, are not caught: finding an earlier EOI would mean searching the
  whole scan, 1.3 ms a megabyte, against microseconds for everything else.)
- WebP: the RIFF size must match the length of the data, and the first chunk must fit.

Trailing bytes after the end are refused too: a server that appends anything to an
image is not sending the image we asked for.
"""

from __future__ import annotations

import struct

__all__ = ["image_problem"]

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"  # length 0, type, CRC of b"IEND"
_UINT32 = struct.Struct(">I")
_UINT16 = struct.Struct(">H")
# JPEG markers that stand alone, without a length: TEM and RST0..RST7.
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})


def image_problem(data: bytes, media_type: str) -> str | None:
    """Why ``data`` (already sniffed as ``media_type``) is not a whole image, or None."""
    if media_type == "image/png":
        return _png(data)
    if media_type == "image/jpeg":
        return _jpeg(data)
    if media_type == "image/webp":
        return _webp(data)
    return f"{media_type} is not a type flux_sdk checks"


def _png(data: bytes) -> str | None:
    if not data.startswith(_PNG_SIGNATURE):
        return "it lacks the PNG signature"
    end = len(data)
    at = len(_PNG_SIGNATURE)
    unpack = _UINT32.unpack_from
    while at + 12 <= end:
        length = unpack(data, at)[0]
        kind = data[at + 4 : at + 8]
        after = at + 12 + length
        if after > end:
            return f"its {kind.decode('latin-1')!r} chunk is cut off"
        if kind == b"IEND":
            if data[at:after] != _IEND:
                return "its IEND chunk is malformed"
            if after != end:
                return f"{end - after} bytes follow its IEND chunk"
            return None
        at = after
    return "it ends before its IEND chunk"


def _jpeg(data: bytes) -> str | None:
    end = len(data)
    if data[:2] != b"\xff\xd8":
        return "it lacks the JPEG start marker"
    at = 2
    unpack = _UINT16.unpack_from
    while True:
        # Markers may be preceded by fill bytes (FF FF ...).
        while at < end and data[at] == 0xFF and at + 1 < end and data[at + 1] == 0xFF:
            at += 1
        if at + 2 > end:
            return "it ends inside its headers"
        if data[at] != 0xFF:
            return "its headers are malformed"
        marker = data[at + 1]
        if marker == 0xD9:
            return "it ends before any image data"
        if marker in _STANDALONE:
            at += 2
            continue
        if at + 4 > end:
            return "it ends inside its headers"
        length = unpack(data, at + 2)[0]
        if length < 2:
            return "its headers are malformed"
        at += 2 + length
        if at > end:
            return "a header segment is cut off"
        if marker == 0xDA:  # start of scan: entropy-coded data up to EOI follows
            break
    if not data.endswith(b"\xff\xd9") or end - 2 < at:
        return "it does not end with the JPEG end marker (cut off, or bytes appended)"
    return None


def _webp(data: bytes) -> str | None:
    end = len(data)
    if end < 20 or data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        return "it ends inside its RIFF header"
    declared = struct.unpack_from("<I", data, 4)[0] + 8
    if declared != end:
        if declared > end:
            return f"its RIFF header declares {declared} bytes but only {end} arrived"
        return f"{end - declared} bytes follow the {declared} its RIFF header declares"
    first = struct.unpack_from("<I", data, 16)[0]
    if 20 + first + (first & 1) > end:
        return "its first chunk is cut off"
    return None
