"""Tiny real images for tests, made with Pillow."""

from __future__ import annotations

import io

from PIL import Image


def image_bytes(fmt: str = "PNG", size: int = 4, color: tuple[int, int, int] = (0, 0, 0)) -> bytes:
    """A ``size`` x ``size`` image of one colour, encoded as ``fmt`` (PNG, JPEG, WEBP)."""
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), color).save(buffer, format=fmt)
    return buffer.getvalue()
