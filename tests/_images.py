"""Tiny real images for tests, made with Pillow."""

from __future__ import annotations

import io
import random

from PIL import Image


def image_bytes(fmt: str = "PNG", size: int = 4, color: tuple[int, int, int] = (0, 0, 0)) -> bytes:
    """A ``size`` x ``size`` image of one colour, encoded as ``fmt`` (PNG, JPEG, WEBP)."""
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), color).save(buffer, format=fmt)
    return buffer.getvalue()


def noise_png(side: int) -> bytes:
    """A ``side`` x ``side`` PNG of random pixels: it hardly compresses, so its size
    follows ``side`` (160 makes over 64 KiB of base64)."""
    noise = random.Random(7).randbytes(side * side * 3)
    buffer = io.BytesIO()
    Image.frombytes("RGB", (side, side), noise).save(buffer, format="PNG")
    return buffer.getvalue()
