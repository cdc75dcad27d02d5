"""Shared by the emulator tests: plain httpx clients, request bodies, and PNG checks."""

from __future__ import annotations

import io
import struct
import zlib
from typing import Any

import httpx
from PIL import Image

from flux_sdk.emulator import DEFAULT_API_KEY, EmulatorApp

DATAOORTS = "/api/v1"
MODEL = "black-forest-labs/flux-1-schnell"
BEARER = {"Authorization": f"Bearer {DEFAULT_API_KEY}"}
API_KEY = {"Authorization": f"Api-Key {DEFAULT_API_KEY}"}
SMALL = {"width": 64, "height": 64}


def client(app: EmulatorApp | None = None) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app or EmulatorApp(default_size=64))
    return httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1")


def dataoorts_body(**data: Any) -> dict[str, Any]:
    return {"model": MODEL, "data": {"prompt": "a red fox", **data}}


def decode(png: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(png))
    image.load()  # decodes every pixel and checks every chunk's CRC
    return image


def chunks(png: bytes) -> list[tuple[bytes, bytes]]:
    """Split a PNG into (type, data) chunks, checking the signature and every CRC."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    found, pos = [], 8
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos : pos + 4])
        kind, data = png[pos + 4 : pos + 8], png[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", png[pos + 8 + length : pos + 12 + length])
        assert crc == zlib.crc32(kind + data), kind
        found.append((kind, data))
        pos += 12 + length
    assert pos == len(png)
    return found
