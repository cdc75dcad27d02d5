"""Decoding a 2 MiB image's base64: binascii against pybase64, in one run.

python benchmarks/base64_decode.py
"""

from __future__ import annotations

import base64
import binascii
import os
import timeit

import pybase64


def best_ms(fn: object, repeat: int = 30) -> float:
    return min(timeit.repeat(fn, number=1, repeat=repeat)) * 1000  # type: ignore[arg-type]


def main() -> None:
    image = os.urandom(2 * 1024 * 1024)
    text = base64.b64encode(image).decode("ascii")
    assert pybase64.b64decode(text, validate=True) == image
    stdlib = best_ms(lambda: binascii.a2b_base64(text, strict_mode=True))
    fast = best_ms(lambda: pybase64.b64decode(text, validate=True))
    print(f"binascii.a2b_base64 (strict): {stdlib:.2f} ms")
    print(f"pybase64.b64decode (validate): {fast:.2f} ms")
    print(f"pybase64 / binascii: {fast / stdlib:.3f}x")


if __name__ == "__main__":
    main()
