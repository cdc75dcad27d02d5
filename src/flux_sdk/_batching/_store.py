"""Where a distributed batch keeps its images: a local directory or any fsspec URL.

Each image ``{stem}.{ext}`` has a record ``{stem}.json`` (its file name, SHA-256,
request fingerprint and provider) written after it. A re-run trusts an image only when
its record names this request and the file still has the recorded hash, so a replayed
task never pays twice for a finished image and never keeps a wrong or partial one.
Both files are written whole or not at all: renamed into place locally, and through
fsspec as one object (object stores) or a temporary name moved into place.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from pathlib import Path
from typing import Any

from flux_sdk._base._errors import ConfigError
from flux_sdk._base._files import save_error, write_atomically

__all__ = ["Store"]


class Store:
    """A local directory (a path) or an fsspec file system (a URL with ``://``)."""

    def __init__(self, output: str | os.PathLike[str]) -> None:
        text = os.fspath(output)
        self.output = text
        self._fs: Any = None
        if "://" in text and not text.startswith("file://"):
            try:
                import fsspec
            except ImportError:
                raise ConfigError(
                    f"writing to {text!r} needs fsspec (pip install fsspec, and the "
                    "package for that file system, such as s3fs or gcsfs)"
                ) from None
            self._fs, self._root = fsspec.core.url_to_fs(text)
            self._fs.makedirs(self._root, exist_ok=True)
        else:
            self._root = text.removeprefix("file://")
            Path(self._root).mkdir(parents=True, exist_ok=True)

    def _path(self, name: str) -> str:
        return f"{self._root.rstrip('/')}/{name}"

    def _read(self, name: str) -> bytes | None:
        try:
            if self._fs is None:
                return Path(self._path(name)).read_bytes()
            return bytes(self._fs.cat_file(self._path(name)))
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None

    def _write(self, name: str, data: bytes) -> str:
        path = self._path(name)
        if self._fs is None:
            write_atomically(data, Path(path))
            return path
        temp = self._path(f".{name}.{secrets.token_hex(4)}.tmp")
        try:
            self._fs.pipe_file(temp, data)
            self._fs.mv(temp, path)
        except OSError as exc:
            raise save_error(f"could not save {path!r}", exc) from exc
        return str(self._fs.unstrip_protocol(path))

    def earlier(self, stem: str, key: str) -> dict[str, Any] | None:
        """The finished image of this request under ``stem``, if one is there whole."""
        raw = self._read(f"{stem}.json")
        record = _record(raw) if raw is not None else None
        if record is None or record.get("key") != key:
            return None
        name = record.get("file")
        if not isinstance(name, str) or not name.startswith(f"{stem}."):
            return None
        data = self._read(name)
        if data is None or hashlib.sha256(data).hexdigest() != record.get("sha256"):
            return None
        path = self._path(name)
        if self._fs is not None:
            path = str(self._fs.unstrip_protocol(path))
        return {"path": path, "sha256": record["sha256"], "provider": record.get("provider")}

    def put(self, stem: str, data: bytes, record: dict[str, Any]) -> str:
        """Write the image, then its record; return where the image is."""
        path = self._write(str(record["file"]), data)
        self._write(f"{stem}.json", json.dumps(record, sort_keys=True).encode())
        return path


def _record(data: bytes) -> dict[str, Any] | None:
    try:
        record = json.loads(data)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None
