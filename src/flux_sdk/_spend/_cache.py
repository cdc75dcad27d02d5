"""`DiskCache`: seeded requests answered from disk, with no request and no cost.

Only a request with a seed is cached. FLUX.1 [schnell] with the same host, model,
prompt, seed, size and steps gives the same image (the hosts document it), so a second
call may be answered with the first call's bytes. Without a seed the host draws one,
and the caller asked for a new image each time: answering from a cache would hand back
the same picture where a fresh one was wanted.

Each entry is one file: a line of JSON (what it holds and the SHA-256 of the image)
and then the image bytes. It is written to a temporary file and renamed into place, so
a reader sees a whole entry or none; it is checked against its hash when read, and
anything wrong with it (cut short, edited, unreadable) is a miss, never an error.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
from pathlib import Path
from typing import Any

import anyio

from flux_sdk._base._errors import ConfigError
from flux_sdk._base._events import logger
from flux_sdk._base._models import GeneratedImage, sniff_media_type
from flux_sdk._pipeline._call import Call
from flux_sdk._pipeline._middleware import CallNext

__all__ = ["DiskCache"]

_VERSION = 1
_MAX_HEADER = 64 * 1024


class DiskCache:
    """A per-call middleware: ``FluxClient(provider, cache=DiskCache("~/.cache/flux"))``.

    A seeded request that was answered before (same host, model and every parameter)
    is read from ``path`` instead of being sent: it holds no slot, spends nothing and
    costs nothing (``image.cost == 0``, ``image.attempts == 0``). A request without a
    seed is always sent and never stored. ``hits`` and ``misses`` count lookups.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        try:
            self.path = Path(path).expanduser()
        except TypeError:
            raise ConfigError(f"DiskCache needs a directory path (got {path!r})") from None
        self.hits = 0
        self.misses = 0

    def __repr__(self) -> str:
        return f"DiskCache({str(self.path)!r})"

    def key(self, host: str, model: object, call: Call) -> str:
        """The entry's name: a hash of the host, the model and the whole request."""
        fields = {"host": host, "model": model, "request": call.request.model_dump(mode="json")}
        text = json.dumps(fields, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(text.encode()).hexdigest()

    async def __call__(self, call: Call, call_next: CallNext) -> GeneratedImage:
        if call.request.seed is None:
            return await call_next(call)
        provider = call.provider
        key = self.key(provider.name, getattr(provider, "model", None), call)
        found = await anyio.to_thread.run_sync(self._read, key)
        if found is not None:
            self.hits += 1
            header, data = found
            return GeneratedImage(
                data=data,
                media_type=header["media_type"],
                provider=header["provider"],
                request=call.request,
                seed=call.request.seed,
                attempts=0,
                request_id=header.get("request_id"),
                cost=0.0,
            )
        self.misses += 1
        image = await call_next(call)
        if image.provider == provider.name:  # a routed call may end at another host
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(self._write, key, image)
        return image

    def _file(self, key: str) -> Path:
        return self.path / key[:2] / f"{key}.img"

    def _read(self, key: str) -> tuple[dict[str, Any], bytes] | None:
        try:
            blob = self._file(key).read_bytes()
        except OSError:
            return None
        try:
            line, _, data = blob.partition(b"\n")
            if len(line) > _MAX_HEADER:
                raise ValueError("header too long")
            header = json.loads(line)
            if (
                not isinstance(header, dict)
                or header.get("version") != _VERSION
                or header.get("key") != key
                or header.get("sha256") != hashlib.sha256(data).hexdigest()
                or sniff_media_type(data) != header.get("media_type")
                or not isinstance(header.get("provider"), str)
            ):
                raise ValueError("does not match its header")
        except (ValueError, RecursionError):
            logger.info("flux_sdk cache: ignoring the damaged entry %s", key[:16])
            return None
        return header, data

    def _write(self, key: str, image: GeneratedImage) -> None:
        header = {
            "version": _VERSION,
            "key": key,
            "provider": image.provider,
            "media_type": image.media_type,
            "sha256": hashlib.sha256(image.data).hexdigest(),
            "request_id": image.request_id,
        }
        target = self._file(key)
        temp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(temp, "wb") as file:
                file.write(json.dumps(header).encode() + b"\n" + image.data)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temp, target)
        except OSError as exc:  # a cache that cannot write is only a cache that misses
            logger.warning("flux_sdk cache: could not store an entry in %s: %s", self.path, exc)
            with contextlib.suppress(OSError):
                temp.unlink()
