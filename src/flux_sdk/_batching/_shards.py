"""One batch directory filled by several processes: shards, their manifests, one reading.

``shard=(k, W)`` gives a process the items whose index is ``k`` modulo ``W``. Every
worker passes the same items, so indices (and file names) are the batch's own, not a
worker's. Shard ``k`` writes ``manifest-{k}-of-{W}.jsonl`` under its own exclusive lock
and holds a shared lock on ``manifest.jsonl``, so shards run together while an unsharded
run of the same directory (which locks ``manifest.jsonl`` exclusively) is refused, and
so is a second process for the same shard. A re-run and `iter_results` read every
manifest of the directory as one batch.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from io import FileIO
from pathlib import Path
from typing import Any

from flux_sdk._base._errors import InvalidRequestError, SaveError

__all__ = ["MANIFEST", "Shard", "check_shard", "iter_results", "lock", "manifest_name", "manifests"]

MANIFEST = "manifest.jsonl"
_SHARD_MANIFEST = re.compile(r"manifest-(\d+)-of-(\d+)\.jsonl")

Shard = tuple[int, int]


def check_shard(shard: object) -> Shard | None:
    """``shard`` as ``(k, W)``, or None; anything else is an `InvalidRequestError`."""
    if shard is None:
        return None
    if (
        isinstance(shard, tuple)
        and len(shard) == 2
        and all(type(part) is int for part in shard)
        and shard[1] >= 1
        and 0 <= shard[0] < shard[1]
    ):
        return shard[0], shard[1]
    raise InvalidRequestError(
        f"shard must be (k, W) with whole numbers 0 <= k < W, got {shard!r}: "
        "worker k of W runs the items whose index is k modulo W"
    )


def manifest_name(shard: Shard | None) -> str:
    """The manifest this run appends to: ``manifest.jsonl``, or its shard's own."""
    return MANIFEST if shard is None else f"manifest-{shard[0]}-of-{shard[1]}.jsonl"


def manifests(path: Path) -> list[Path]:
    """Every manifest of a batch directory: ``manifest.jsonl`` first, then the shards'."""
    found = [path / MANIFEST] if (path / MANIFEST).is_file() else []
    try:
        names = sorted(name for name in os.listdir(path) if _SHARD_MANIFEST.fullmatch(name))
    except OSError:
        return found
    return found + [path / name for name in names]


def iter_results(save_dir: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """Each item's manifest line, by index, read from every manifest of ``save_dir``
    (unsharded and sharded runs alike) as one batch: the last line of an index wins.

    A line is a finished item's record as written (``"file"``, ``"sha256"`` ... for an
    image, ``"error"`` for a failure); torn or foreign lines are skipped.
    """
    last: dict[int, dict[str, Any]] = {}
    for manifest in manifests(Path(save_dir)):
        for line in manifest.read_bytes().splitlines():
            try:
                record = json.loads(line)
            except (ValueError, RecursionError):
                continue
            if isinstance(record, dict) and type(record.get("index")) is int:
                last[record["index"]] = record
    for index in sorted(last):
        yield last[index]


def lock(file: FileIO, path: Path, *, shared: bool = False) -> None:
    """Lock a manifest for this run, or raise `SaveError` if another run holds it."""
    try:
        import fcntl
    except ModuleNotFoundError:  # pragma: no cover - Windows: no lock, documented
        return
    try:
        fcntl.flock(file.fileno(), (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except BlockingIOError:
        raise SaveError(
            f"another batch is writing to {str(path)!r}; wait for it, or use another "
            "directory (workers of one batch pass shard=(k, W), each its own k)"
        ) from None
