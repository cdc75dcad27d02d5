"""One batch directory filled by several processes: shards, their manifests, one reading.

``shard=(k, W)`` gives a process the items whose index is ``k`` modulo ``W``. Every
worker passes the same items, so indices (and file names) are the batch's own, not a
worker's. Shard ``k`` writes ``manifest-{k}-of-{W}.jsonl`` under its own exclusive lock
and holds a shared lock on ``manifest.jsonl``, so shards run together while an unsharded
run of the same directory (which locks ``manifest.jsonl`` exclusively) is refused, and
so is a second process for the same shard. Shards of another ``W`` that share an index
with one in progress (``(0, 4)`` beside ``(0, 2)``) are refused too: once a shard holds
its own lock it looks at every other shard's manifest, and one that is locked belongs
to a run in progress. Of two such runs starting together at least one sees the other.
A re-run and `iter_results` read every manifest of the directory as one batch.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
from collections.abc import Iterator
from io import FileIO
from pathlib import Path
from typing import Any

from flux_sdk._base._errors import InvalidRequestError, SaveError

__all__ = [
    "MANIFEST",
    "Shard",
    "check_shard",
    "iter_results",
    "lock",
    "manifest_name",
    "manifests",
    "meet",
    "refuse_overlap",
]

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
    (unsharded and sharded runs alike) as one batch.

    Within one manifest an item's last line counts. Across them an image wins: a line
    whose file is still there with its recorded size is given, whichever manifest holds
    it, over a failure another one recorded (a shard's failed item that a later run
    made); otherwise the item's last failure. A line is a finished item's record as
    written (``"file"``, ``"sha256"`` ... for an image, ``"error"`` for a failure);
    torn or foreign lines are skipped.
    """
    folder = Path(save_dir)
    images: dict[int, dict[str, Any]] = {}
    failures: dict[int, dict[str, Any]] = {}
    for manifest in manifests(folder):
        last: dict[int, dict[str, Any]] = {}
        for line in manifest.read_bytes().splitlines():
            try:
                record = json.loads(line)
            except (ValueError, RecursionError):
                continue
            if isinstance(record, dict) and type(record.get("index")) is int:
                last[record["index"]] = record
        for index, record in last.items():
            if "error" in record:
                failures[index] = record
            elif index not in images and _still_there(folder, record):
                images[index] = record
    for index in sorted(images.keys() | failures.keys()):
        yield images.get(index) or failures[index]


def _still_there(folder: Path, record: dict[str, Any]) -> bool:
    """Whether a line's image file is in ``folder`` with the size it records."""
    name, size = record.get("file"), record.get("bytes")
    if not isinstance(name, str) or "/" in name or "\\" in name or type(size) is not int:
        return False
    try:
        return (folder / name).stat().st_size == size
    except OSError:
        return False


def meet(one: Shard, other: Shard) -> bool:
    """Whether some index is in both shards: ``i % W1 == k1`` and ``i % W2 == k2`` have a
    common solution exactly when ``k1 - k2`` is a multiple of ``gcd(W1, W2)``."""
    return (one[0] - other[0]) % math.gcd(one[1], other[1]) == 0


def refuse_overlap(path: Path, shard: Shard) -> None:
    """Raise `SaveError` if a run in progress holds a shard that shares an index with
    ``shard``; call it holding this shard's own lock."""
    for manifest in manifests(path):
        found = _SHARD_MANIFEST.fullmatch(manifest.name)
        if found is None:
            continue  # manifest.jsonl: the shared lock on it keeps whole runs out
        other = (int(found[1]), int(found[2]))
        if other != shard and other[0] < other[1] and meet(shard, other) and _in_use(manifest):
            raise _busy(path, manifest.name)


def _in_use(manifest: Path) -> bool:
    """Whether a run holds ``manifest`` (its exclusive lock)."""
    try:
        import fcntl
    except ModuleNotFoundError:  # pragma: no cover - Windows: no lock, documented
        return False
    try:
        file = open(manifest, "rb")  # noqa: SIM115 - closed below, and its lock with it
    except OSError:
        return False
    with file:
        try:
            fcntl.flock(file.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        with contextlib.suppress(OSError):
            fcntl.flock(file.fileno(), fcntl.LOCK_UN)
    return False


def _busy(path: Path, name: str | None = None) -> SaveError:
    held = "" if name is None else f" ({name} shares indices with this run)"
    return SaveError(
        f"another batch is writing to {str(path)!r}{held}; wait for it, or use another "
        "directory (workers of one batch pass shard=(k, W), each its own k)"
    )


def lock(file: FileIO, path: Path, *, shared: bool = False) -> None:
    """Lock a manifest for this run, or raise `SaveError` if another run holds it."""
    try:
        import fcntl
    except ModuleNotFoundError:  # pragma: no cover - Windows: no lock, documented
        return
    try:
        fcntl.flock(file.fileno(), (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except BlockingIOError:
        raise _busy(path) from None
