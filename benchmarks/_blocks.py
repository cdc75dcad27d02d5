"""Warm worker processes that run blocks of images on request (``--floor8`` and its
cross-check): ``_worker.py`` in its rounds mode, one line per block."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

from _figures import WORKLOADS

HERE = Path(__file__).resolve().parent
CONCURRENCY = 8
# --keep-memory: glibc serves large blocks from its heap and never gives freed memory
# back, so no client pays page faults for memory it freed an image ago. Without it, the
# floor's figure follows its page faults from round to round (StreamReader grows its
# buffer as each body arrives): 2.5 ms with none, 3.9 ms with ~400 per image.
KEEP_MEMORY = {"MALLOC_MMAP_THRESHOLD_": str(32 << 20), "MALLOC_TRIM_THRESHOLD_": str(1 << 40)}


class Sizes(NamedTuple):
    """A round: ``blocks`` blocks of ``block`` images for each of the pair, one block of
    ``reference`` images for each reference; ``warmup`` images first in every process."""

    blocks: int
    block: int
    reference: int
    warmup: int


def start(
    client: str, url: str, warmup: int, keep_memory: bool, under: tuple[str, ...] = ()
) -> subprocess.Popen[str]:
    """A warm worker for ``client`` (run under ``under``, a command such as valgrind)."""
    spec = {
        "client": client,
        "url": url,
        "concurrency": CONCURRENCY,
        "count": 0,
        "warmup": warmup,
        "image_bytes": next(w for w in WORKLOADS if w.key == "2mib").image_bytes,
        "write": True,
        "rounds": True,
    }
    process = subprocess.Popen(
        [*under, sys.executable, str(HERE / "_worker.py"), json.dumps(spec)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, **(KEEP_MEMORY if keep_memory else {})},
    )
    assert process.stdout is not None
    if process.stdout.readline().strip() != "warm":
        raise RuntimeError(f"{client} did not warm up")
    return process


def one_block(process: subprocess.Popen[str], count: int) -> dict[str, float]:
    assert process.stdin is not None
    assert process.stdout is not None
    process.stdin.write(f"go {count}\n")
    process.stdin.flush()
    line = process.stdout.readline()
    if not line:
        raise RuntimeError("a worker stopped")
    result: dict[str, float] = json.loads(line)
    return result
