"""``flux-sdk batch --shard K/W``: one of W workers filling one directory together.

The option is checked as it is parsed (a usage error, exit 2, before anything is
sent or read); the batch then runs ``generate_many(..., shard=(K, W))``, whose results
are this shard's only, and spreads them back over the batch's own indices so every
report names the item's line in the file.
"""

from __future__ import annotations

import argparse
import re
from typing import TypeVar

__all__ = ["add_shard_option", "by_index", "shard_total"]

_T = TypeVar("_T")
_SHARD = re.compile(r"(\d+)/(\d+)", re.ASCII)


def _shard(text: str) -> tuple[int, int]:
    found = _SHARD.fullmatch(text.strip())
    k, w = (int(found[1]), int(found[2])) if found else (-1, 0)
    if not 0 <= k < w:
        raise argparse.ArgumentTypeError(
            f"expected K/W, worker K of W counted from 0 (0 <= K < W, such as 0/4), got {text!r}"
        )
    return k, w


def add_shard_option(batch: argparse.ArgumentParser) -> None:
    batch.add_argument(
        "--shard",
        type=_shard,
        metavar="K/W",
        help="run only the items whose index is K modulo W, so W workers given the same "
        "PROMPTS and DIR fill it together (K from 0 to W-1); each writes its own "
        "manifest-K-of-W.jsonl, and a re-run with or without --shard reads them all",
    )


def shard_total(total: int, shard: tuple[int, int] | None) -> int:
    """How many of ``total`` items this run owns."""
    return total if shard is None else len(range(shard[0], total, shard[1]))


def by_index(results: list[_T], total: int, shard: tuple[int, int] | None) -> list[_T | None]:
    """This run's results at the batch's own indices (None where another shard's are)."""
    if shard is None:
        return list(results)
    placed: list[_T | None] = [None] * total
    for index, result in zip(range(shard[0], total, shard[1]), results, strict=True):
        placed[index] = result
    return placed
