"""A batch directory: its image files, its ``manifest.jsonl``, and what a re-run trusts.

A batch directory holds one image per finished item, named ``{index:06d}-{slug}.png``,
and ``manifest.jsonl``, one line per finished item (appended and synced as each item
ends). The manifest is also what a re-run reads to skip finished items, and anyone can
edit it, so a line is trusted only as far as it can be checked: it must name exactly
the file this item would get, and that file must still have the recorded size and hash
and be a whole image.
Nothing outside the files this batch would write is ever read, replaced or deleted.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import re
import threading
from io import FileIO
from pathlib import Path
from typing import Any

from flux_sdk._base._errors import FluxError, SaveError
from flux_sdk._base._files import save_error
from flux_sdk._base._imagecheck import image_problem
from flux_sdk._base._models import GeneratedImage, GenerateRequest, sniff_media_type

from ._saved import SavedImage, cost_of, file_stem, request_key, seconds_of, slug
from ._shards import MANIFEST, Shard, lock, manifest_name, manifests, refuse_overlap

__all__ = ["MANIFEST", "BatchDirectory", "SavedImage", "file_stem", "request_key", "slug"]

_EXTENSIONS = {"image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp"}
_IMAGE_NAME = re.compile(r"(\d{6,})-[a-z0-9-]*\.(?:png|jpg|webp)")
# What save() leaves behind if the process dies mid-write: `.{name}.{8 hex}.tmp`.
_TEMP_NAME = re.compile(r"\.(\d{6,})-[a-z0-9-]*\.(?:png|jpg|webp)\.[0-9a-f]{8}\.tmp")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_RERUN = "the batch stopped; run it again to finish the rest (what is saved is kept)"


class BatchDirectory:
    """A batch directory, held for one run of ``size`` items: lock, manifest and images.

    With ``shard=(k, W)`` it is one worker's share (see ``_shards``): it appends to its
    shard's manifest, reads every manifest, and touches only the files of its indices.

    Every method blocks and runs in a worker thread; manifest writes are serialised by a
    lock, since several threads finish items at once. The manifest is written unbuffered,
    so a failed write is reported once, where it happened, and never again on close.
    """

    def __init__(self, path: Path, size: int, shard: Shard | None = None) -> None:
        self.path = path
        self._size = size
        self._shard = shard
        self._guard: FileIO | None = None
        what = f"cannot use {str(path)!r} as a batch directory"
        if "\x00" in str(path):
            raise SaveError(f"{what}: the path contains a NUL character; remove it")
        try:
            path.mkdir(parents=True, exist_ok=True)
            # The manifest doubles as the lock: two batches writing one directory would
            # overwrite each other's files and interleave lines.
            self._file: FileIO = open(path / manifest_name(shard), "a+b", buffering=0)  # noqa: SIM115
            if shard is not None:  # shards share the directory, an unsharded run may not
                self._guard = open(path / MANIFEST, "a+b", buffering=0)  # noqa: SIM115
        except OSError as exc:
            raise save_error(what, exc) from exc
        self._write_lock = threading.Lock()
        self._broken: SaveError | None = None  # the first write that failed
        try:
            lock(self._file, path)
            if self._guard is not None:
                lock(self._guard, path, shared=True)
            if shard is not None:
                refuse_overlap(path, shard)  # only now: see _shards
            self._file.seek(0)
            content = self._file.readall()
            self._end = len(content)
            # Each index's last line in each manifest, this run's own first: an image any
            # of them records is found, whatever an older failure elsewhere says.
            self._earlier: dict[int, list[dict[str, Any]]] = {
                index: [record] for index, record in _parse(content, size).items()
            }
            for manifest in manifests(path):
                if manifest.name != self._file_name:
                    for index, record in _parse(manifest.read_bytes(), size).items():
                        self._earlier.setdefault(index, []).append(record)
            if content and not content.endswith(b"\n"):  # a line cut short by a crash
                self._write(b"\n")
            self._files = self._scan()
        except SaveError:
            self.close()
            raise
        except OSError as exc:
            self.close()
            raise save_error(what, exc) from exc
        except BaseException:
            self.close()
            raise

    @property
    def _file_name(self) -> str:
        return manifest_name(self._shard)

    def _mine(self, index: int) -> bool:
        """Whether this run may write (or clean up after) item ``index``."""
        return self._shard is None or index % self._shard[1] == self._shard[0]

    def _scan(self) -> dict[int, list[str]]:
        """Image files by index; temp files a killed run left behind are removed."""
        files: dict[int, list[str]] = {}
        with os.scandir(self.path) as entries:
            for entry in entries:
                temp = _TEMP_NAME.fullmatch(entry.name)
                if temp and self._mine(int(temp.group(1))):  # never another shard's
                    Path(entry.path).unlink(missing_ok=True)
                elif (
                    (match := _IMAGE_NAME.fullmatch(entry.name))
                    and (index := _index_of(match.group(1))) is not None
                    and self._mine(index)
                ):
                    files.setdefault(index, []).append(entry.name)
        return files

    def earlier(self, index: int, request: GenerateRequest, key: str) -> SavedImage | None:
        """What an earlier run recorded for this very item, if it succeeded; unchecked
        against the disk yet (see `verify`)."""
        for record in self._earlier.get(index, ()):
            if "error" not in record and record.get("key") == key:
                return self._recorded(index, request, record)
        return None

    def _recorded(
        self, index: int, request: GenerateRequest, record: dict[str, Any]
    ) -> SavedImage | None:
        name, digest, size = record.get("file"), record.get("sha256"), record.get("bytes")
        stem = file_stem(index, request.prompt)
        # Exactly this item's name: a line naming another item's file (or anything
        # outside the directory) is not trusted, and that item simply runs again.
        if not (isinstance(name, str) and name in {stem + ext for ext in _EXTENSIONS.values()}):
            return None
        if not (isinstance(digest, str) and _SHA256.fullmatch(digest)):
            return None
        if type(size) is not int or size <= 0:
            return None
        seed, attempts, elapsed = record.get("seed"), record.get("attempts"), record.get("elapsed")
        provider, request_id = record.get("provider"), record.get("request_id")
        return SavedImage(
            index=index,
            path=self.path / name,
            sha256=digest,
            size=size,
            media_type="",  # from the bytes, once verify() has read them
            provider=provider if isinstance(provider, str) else "unknown",
            request=request,
            seed=seed if type(seed) is int else request.seed,
            attempts=attempts if type(attempts) is int and attempts > 0 else 1,
            elapsed=seconds_of(elapsed),
            request_id=request_id if isinstance(request_id, str) else None,
            skipped=True,
            cost=cost_of(record.get("cost")),
        )

    def verify(self, earlier: SavedImage) -> tuple[SavedImage, bytes] | None:
        """The earlier image and its bytes if its file is intact, else None."""
        try:
            if earlier.path.stat().st_size != earlier.size:
                return None  # also keeps a huge stranger from being read into memory
            data = earlier.path.read_bytes()
        except OSError:
            return None
        media_type = sniff_media_type(data)
        if (
            hashlib.sha256(data).hexdigest() != earlier.sha256
            or media_type is None
            or earlier.path.suffix != _EXTENSIONS[media_type]
            # The same check a fresh image passes: a half image saved by an older
            # version (or a line written by hand) runs again rather than being skipped.
            or image_problem(data, media_type) is not None
        ):
            return None
        self._drop_others(earlier.index, earlier.path.name)
        return dataclasses.replace(earlier, media_type=media_type), data

    def store(
        self, index: int, key: str, request: GenerateRequest, image: GeneratedImage
    ) -> SavedImage:
        """Write the image atomically, then its manifest line.

        The name comes from the batch's own request, not the image's (middleware may have
        changed that), so a re-run looks for the file under the name it was saved as.
        """
        name = file_stem(index, request.prompt) + image.extension
        try:
            path = image.save(self.path / name)
        except OSError as exc:
            raise _stopped(f"could not save image {index}", exc) from exc
        self._drop_others(index, name)
        digest = hashlib.sha256(image.data).hexdigest()
        self.append(
            {
                **_describe(index, key, request),
                "seed": image.seed,
                "provider": image.provider,
                "file": name,
                "sha256": digest,
                "bytes": len(image.data),
                "media_type": image.media_type,
                "attempts": image.attempts,
                "hosts": list(image.hosts),
                "elapsed": round(image.elapsed, 3),
                "request_id": image.request_id,
                "cost": image.cost,
            }
        )
        return SavedImage(
            index=index,
            path=path,
            sha256=digest,
            size=len(image.data),
            media_type=image.media_type,
            provider=image.provider,
            request=request,
            seed=image.seed,
            attempts=image.attempts,
            elapsed=image.elapsed,
            request_id=image.request_id,
            cost=image.cost,
        )

    def record_error(
        self,
        index: int,
        key: str | None,
        request: GenerateRequest | None,
        prompt: str | None,
        error: FluxError,
    ) -> None:
        """A line for an item that failed, so the manifest accounts for every item."""
        if request is None:
            line: dict[str, Any] = {"index": index, "key": None, "prompt": prompt}
        else:
            line = _describe(index, key, request)
        line["provider"] = error.provider
        line["attempts"] = error.attempts
        line["hosts"] = list(error.hosts)
        line["cost"] = error.cost
        line["billed"] = error.billed
        line["resend_could_pay_twice"] = error.resend_could_pay_twice
        line["error"] = {
            "type": type(error).__name__,
            "message": error.message,
            "retryable": error.retryable,
            "status_code": getattr(error, "status_code", None),
        }
        self.append(line)

    def append(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"
        with self._write_lock:
            self._write(line.encode())

    def _write(self, data: bytes) -> None:
        """Append ``data`` whole and synced, or raise `SaveError` and leave the file as it
        was: a line that did not fit is cut off again, so no later line is glued to it."""
        what = f"could not write {str(self.path / MANIFEST)!r}"
        if self._broken is not None:
            # The same error again: whichever worker's failure surfaces first, the batch
            # reports the cause (a full disk), not "an earlier write failed".
            raise SaveError(self._broken.message, errno=self._broken.errno)
        fd = self._file.fileno()
        try:
            written = 0
            while written < len(data):
                written += os.write(fd, data[written:])
            os.fsync(fd)
        except OSError as exc:
            self._broken = _stopped(what, exc)
            with contextlib.suppress(OSError):  # else the next run ends the torn line
                os.ftruncate(fd, self._end)
            raise self._broken from exc
        self._end += len(data)

    def _drop_others(self, index: int, keep: str) -> None:
        """Remove older files of this index under another name: one file per item. Only
        names with exactly this index's prefix are ever listed here."""
        for name in self._files.pop(index, ()):
            if name != keep:
                (self.path / name).unlink(missing_ok=True)

    def close(self) -> None:
        self._file.close()  # unbuffered: nothing left to flush; also releases the lock
        if self._guard is not None:
            self._guard.close()


def _parse(content: bytes, size: int) -> dict[int, dict[str, Any]]:
    """The last well-formed line of each item in a batch of ``size``; torn, foreign and
    out-of-range lines are ignored (those items run again)."""
    earlier: dict[int, dict[str, Any]] = {}
    for line in content.splitlines():
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):  # torn, not UTF-8, absurdly nested
            continue
        if not isinstance(record, dict):
            continue
        index = record.get("index")
        if type(index) is int and 0 <= index < size:  # not a bool, a float or a stranger
            earlier[index] = record
    return earlier


def _index_of(digits: str) -> int | None:
    """The index a file name's prefix stands for, if it is the prefix we would write."""
    index = int(digits)
    return index if f"{index:06d}" == digits else None


def _stopped(what: str, exc: OSError) -> SaveError:
    error = save_error(what, exc)
    return SaveError(f"{error.message}; {_RERUN}", errno=error.errno)


def _describe(index: int, key: str | None, request: GenerateRequest) -> dict[str, Any]:
    line: dict[str, Any] = {
        "index": index,
        "key": key,
        "prompt": request.prompt,
        "seed": request.seed,
        "steps": request.steps,
    }
    if request.width is not None or request.height is not None:
        line["width"], line["height"] = request.width, request.height
    return line
