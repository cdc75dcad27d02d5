"""Batches: many requests through one client, saved to a directory a re-run can finish.

A batch directory holds one image per finished item, named ``{index:06d}-{slug}.png``,
and ``manifest.jsonl``, one line per finished item (appended, flushed and synced as each
item ends). A re-run into the same directory skips every item whose line, file and hash
still agree, and runs the rest.
"""

from __future__ import annotations

import contextvars
import dataclasses
import hashlib
import json
import os
import re
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Union, cast

import anyio

from ._errors import FluxError, InvalidRequestError, SaveError
from ._models import GeneratedImage, GenerateRequest

if TYPE_CHECKING:
    from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

    from ._client import FluxClient

__all__ = ["MANIFEST", "BatchIterator", "BatchProgress", "SavedImage", "slug"]

MANIFEST = "manifest.jsonl"
# What save() leaves behind if the process dies mid-write: `.{name}.{8 hex}.tmp`.
_TEMP_NAME = re.compile(r"\.(\d{6,})-[a-z0-9-]*\.(?:png|jpg|webp)\.[0-9a-f]{8}\.tmp")
_IMAGE_NAME = re.compile(r"(\d{6,})-[a-z0-9-]*\.(?:png|jpg|webp)")

BatchResult = Union[GeneratedImage, "SavedImage", FluxError]
"""One item's outcome: its image (in memory or on disk) or the error that ended it."""


def slug(prompt: str, limit: int = 40) -> str:
    """A short file-name-safe stand-in for a prompt: lower-case ASCII words and hyphens."""
    text = re.sub(r"[^a-z0-9]+", "-", prompt.lower()).strip("-")[:limit].rstrip("-")
    return text or "image"


@dataclass(frozen=True, slots=True)
class BatchProgress:
    """Where a batch stands; ``on_progress`` gets a new one each time an item ends.

    ``done`` counts images generated in this run, ``skipped`` those already in the
    directory from an earlier run, ``retries`` the extra attempts spent so far.
    """

    total: int
    done: int = 0
    skipped: int = 0
    failed: int = 0
    retries: int = 0
    elapsed: float = 0.0

    @property
    def finished(self) -> int:
        """Items that have ended, one way or another."""
        return self.done + self.skipped + self.failed

    @property
    def rate(self) -> float:
        """Images generated per second in this run."""
        return self.done / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def eta(self) -> float | None:
        """Seconds until the batch ends at the pace so far, or None before any item has."""
        ended = self.done + self.failed  # skipped items cost no time and say nothing
        if ended == 0 or self.elapsed <= 0:
            return None
        return (self.total - self.finished) * self.elapsed / ended


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class SavedImage:
    """An image a batch wrote to disk and did not keep in memory (``keep_images=False``).

    ``skipped`` is true when the file was already there from an earlier run.
    """

    index: int
    path: Path
    sha256: str
    size: int
    media_type: str
    provider: str
    request: GenerateRequest
    seed: int | None = None
    attempts: int = 1
    elapsed: float = 0.0
    request_id: str | None = None
    skipped: bool = False

    def __repr__(self) -> str:
        return (
            f"SavedImage(index={self.index}, path={str(self.path)!r}, bytes={self.size}, "
            f"media_type={self.media_type!r}, seed={self.seed!r}, attempts={self.attempts}, "
            f"skipped={self.skipped})"
        )

    def read_bytes(self) -> bytes:
        """The image bytes, read back from ``path``."""
        return self.path.read_bytes()

    def load(self) -> GeneratedImage:
        """The image as a `GeneratedImage`, read back from ``path``."""
        return self._image(self.read_bytes())

    def _image(self, data: bytes) -> GeneratedImage:
        return GeneratedImage(
            data=data,
            media_type=self.media_type,
            provider=self.provider,
            request=self.request,
            seed=self.seed,
            elapsed=self.elapsed,
            attempts=self.attempts,
            request_id=self.request_id,
            path=self.path,
        )


@dataclass(frozen=True, slots=True)
class _Invalid:
    """An item that is not a valid request: its error, and its prompt if it had one."""

    error: InvalidRequestError
    prompt: str | None


def _prepare(items: Iterable[str | GenerateRequest]) -> list[GenerateRequest | _Invalid]:
    """Turn each item into a request; a bad item becomes its error, the rest still run."""
    if isinstance(items, (str, bytes)):
        raise InvalidRequestError(
            "generate_many() takes a list of prompts, not a single string; "
            "for one image use generate(), or wrap it: [prompt]"
        )
    try:
        iterator = iter(items)
    except TypeError:
        raise InvalidRequestError(
            f"generate_many() takes an iterable of prompts or GenerateRequests, "
            f"not {type(items).__name__}"
        ) from None
    prepared: list[GenerateRequest | _Invalid] = []
    # Typed as object: callers without a type checker pass anything.
    for index, item in enumerate(cast("Iterator[object]", iterator)):
        if isinstance(item, GenerateRequest):
            prepared.append(item)
        elif isinstance(item, str):
            try:
                prepared.append(GenerateRequest(prompt=item))
            except InvalidRequestError as exc:
                prepared.append(_Invalid(_at(index, exc), item))
        else:
            error = InvalidRequestError(
                f"item {index} is {type(item).__name__}, not a prompt or a GenerateRequest"
            )
            prepared.append(_Invalid(error, None))
    return prepared


def _at(index: int, exc: InvalidRequestError) -> InvalidRequestError:
    return InvalidRequestError(f"item {index}: {exc.message}")


def request_key(request: GenerateRequest) -> str:
    """A fingerprint of everything that shapes the image, to match a re-run's items."""
    text = json.dumps(request.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class _Directory:
    """A batch directory, held for one run: its lock, its manifest, its image files.

    Every method is blocking and runs in a worker thread; writes to the manifest are
    serialised by a lock, since several threads finish items at once.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.mkdir(parents=True, exist_ok=True)
            # The manifest doubles as the lock: two batches writing one directory would
            # overwrite each other's files and interleave lines.
            self._file = open(path / MANIFEST, "a+b")  # noqa: SIM115 - held until close()
        except OSError as exc:
            raise SaveError(
                f"cannot use {str(path)!r} as a batch directory: {exc.strerror or exc}",
                errno=exc.errno,
            ) from exc
        try:
            _lock(self._file, path)
            self._earlier, ends_with_newline = self._read_manifest()
            if not ends_with_newline:  # a line cut short by a crash: start a fresh one
                self._write(b"\n")
            self._files = self._scan()
        except BaseException:
            self._file.close()
            raise
        self._write_lock = threading.Lock()

    def _read_manifest(self) -> tuple[dict[int, dict[str, Any]], bool]:
        self._file.seek(0)
        content = self._file.read()
        earlier: dict[int, dict[str, Any]] = {}
        for line in content.splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue  # a torn line: that item simply runs again
            if isinstance(record, dict) and isinstance(record.get("index"), int):
                earlier[record["index"]] = record  # the last line for an item wins
        return earlier, not content or content.endswith(b"\n")

    def _scan(self) -> dict[int, list[str]]:
        """Image files by index; temp files a killed run left behind are removed."""
        files: dict[int, list[str]] = {}
        with os.scandir(self.path) as entries:
            for entry in entries:
                if _TEMP_NAME.fullmatch(entry.name):
                    Path(entry.path).unlink(missing_ok=True)
                elif match := _IMAGE_NAME.fullmatch(entry.name):
                    files.setdefault(int(match.group(1)), []).append(entry.name)
        return files

    def earlier(self, index: int, key: str) -> dict[str, Any] | None:
        """The line an earlier run wrote for this same item, if it succeeded."""
        record = self._earlier.get(index)
        if record is None or record.get("key") != key or "error" in record:
            return None
        name = record.get("file")
        if not isinstance(name, str) or not _IMAGE_NAME.fullmatch(name):
            return None  # never follow a name we would not have written
        return record

    def verify(self, index: int, record: dict[str, Any]) -> bytes | None:
        """The earlier image's bytes if its file is intact, else None."""
        name: str = record["file"]
        path = self.path / name
        try:
            data = path.read_bytes()
        except OSError:
            return None
        if hashlib.sha256(data).hexdigest() != record.get("sha256"):
            return None
        self._drop_others(index, name)
        return data

    def store(self, index: int, key: str, image: GeneratedImage) -> SavedImage:
        """Write the image atomically, then its manifest line."""
        name = f"{index:06d}-{slug(image.request.prompt)}{image.extension}"
        try:
            path = image.save(self.path / name)
        except OSError as exc:
            raise SaveError(
                f"could not save image {index} to {str(self.path / name)!r}: "
                f"{exc.strerror or exc}; the batch stopped, run it again to resume",
                errno=exc.errno,
            ) from exc
        self._drop_others(index, name)
        digest = hashlib.sha256(image.data).hexdigest()
        saved = SavedImage(
            index=index,
            path=path,
            sha256=digest,
            size=len(image.data),
            media_type=image.media_type,
            provider=image.provider,
            request=image.request,
            seed=image.seed,
            attempts=image.attempts,
            elapsed=image.elapsed,
            request_id=image.request_id,
        )
        self.append(
            {
                **_describe(index, key, image.request),
                "seed": image.seed,
                "provider": image.provider,
                "file": name,
                "sha256": digest,
                "bytes": len(image.data),
                "media_type": image.media_type,
                "attempts": image.attempts,
                "elapsed": round(image.elapsed, 3),
                "request_id": image.request_id,
            }
        )
        return saved

    def record_error(
        self, index: int, key: str | None, item: GenerateRequest | _Invalid, error: FluxError
    ) -> None:
        if isinstance(item, _Invalid):
            line: dict[str, Any] = {"index": index, "key": None, "prompt": item.prompt}
        else:
            line = _describe(index, key, item)
        line["provider"] = error.provider
        line["attempts"] = error.attempts
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
        try:
            self._file.write(data)
            self._file.flush()
            os.fsync(self._file.fileno())
        except OSError as exc:
            raise SaveError(
                f"could not write {str(self.path / MANIFEST)!r}: {exc.strerror or exc}",
                errno=exc.errno,
            ) from exc

    def _drop_others(self, index: int, keep: str) -> None:
        """Remove older files for this index under another name: one file per item."""
        for name in self._files.pop(index, ()):
            if name != keep:
                (self.path / name).unlink(missing_ok=True)

    def close(self) -> None:
        self._file.close()  # also releases the lock


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


def _lock(file: Any, path: Path) -> None:
    try:
        import fcntl
    except ModuleNotFoundError:  # pragma: no cover - Windows: no lock, documented
        return
    try:
        fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise SaveError(
            f"another batch is writing to {str(path)!r}; wait for it, or use another directory"
        ) from None


Emit = Callable[[tuple[int, BatchResult]], Awaitable[None]]


class Batch:
    """One run of many requests through a client: the shared part of `generate_many`
    and `iter_many`."""

    def __init__(
        self,
        client: FluxClient,
        items: Iterable[str | GenerateRequest],
        *,
        save_dir: str | os.PathLike[str] | None,
        keep_images: bool,
        on_progress: Callable[[BatchProgress], object] | None,
        max_retries: int | None,
    ) -> None:
        if not keep_images and save_dir is None:
            raise InvalidRequestError(
                "keep_images=False needs save_dir: otherwise every image would be thrown away"
            )
        if max_retries is not None and (
            not isinstance(max_retries, int) or isinstance(max_retries, bool) or max_retries < 0
        ):
            raise InvalidRequestError(
                f"max_retries must be a non-negative integer (got {max_retries!r})"
            )
        self.client = client
        self.items = _prepare(items)
        self.save_dir = None if save_dir is None else Path(save_dir)
        self.keep_images = keep_images
        self.on_progress = on_progress
        self.max_retries = max_retries
        self.progress = BatchProgress(total=len(self.items))
        self._start = 0.0
        self._failure: BaseException | None = None

    async def run(self, emit: Emit) -> None:
        """Run every item, ``emit`` each result as it ends; at most one per worker is
        held, so memory follows the concurrency limit, not the batch size."""
        directory = None
        if self.save_dir is not None:
            directory = await anyio.to_thread.run_sync(_Directory, self.save_dir)
        self._start = time.perf_counter()
        pending = iter(range(len(self.items)))
        workers = min(len(self.items), self.client.concurrency.limit)
        try:
            async with anyio.create_task_group() as group:
                for _ in range(workers):
                    group.start_soon(self._work, pending, emit, directory, group.cancel_scope)
        finally:
            if directory is not None:
                directory.close()
        if self._failure is not None:
            raise self._failure

    async def _work(
        self,
        pending: Iterator[int],
        emit: Emit,
        directory: _Directory | None,
        everyone: anyio.CancelScope,
    ) -> None:
        try:
            for index in pending:  # shared by every worker: each index is taken once
                result, skipped = await self._one(index, directory)
                self._count(result, skipped)
                await emit((index, result))
        except anyio.get_cancelled_exc_class():
            raise
        except BaseException as exc:  # a full disk, a bug: stop the batch, raise it once
            if self._failure is None:
                self._failure = exc
            everyone.cancel()

    async def _one(self, index: int, directory: _Directory | None) -> tuple[BatchResult, bool]:
        """The item's result, and whether an earlier run had already made it."""
        item = self.items[index]
        if isinstance(item, _Invalid):
            if directory is not None:
                write = directory.record_error
                await anyio.to_thread.run_sync(write, index, None, item, item.error)
            return item.error, False
        key = request_key(item) if directory is not None else None
        if directory is not None and key is not None:
            record = directory.earlier(index, key)
            if record is not None:
                data = await anyio.to_thread.run_sync(directory.verify, index, record)
                if data is not None:
                    return self._skipped(index, item, record, data, directory.path), True
        try:
            image = await self.client.generate(item, max_retries=self.max_retries)
        except FluxError as exc:
            if directory is not None:
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(directory.record_error, index, key, item, exc)
            return exc, False
        if directory is None or key is None:
            return image, False
        # Shielded: an image in hand has been paid for, so it is written even when the
        # batch is being cancelled (Ctrl-C, a break out of iter_many).
        with anyio.CancelScope(shield=True):
            saved = await anyio.to_thread.run_sync(directory.store, index, key, image)
        return (dataclasses.replace(image, path=saved.path) if self.keep_images else saved), False

    def _skipped(
        self,
        index: int,
        request: GenerateRequest,
        record: dict[str, Any],
        data: bytes,
        folder: Path,
    ) -> GeneratedImage | SavedImage:
        saved = SavedImage(
            index=index,
            path=folder / record["file"],
            sha256=record["sha256"],
            size=len(data),
            media_type=str(record.get("media_type")),
            provider=str(record.get("provider")),
            request=request,
            seed=record.get("seed"),
            attempts=int(record.get("attempts") or 1),
            elapsed=float(record.get("elapsed") or 0.0),
            request_id=record.get("request_id"),
            skipped=True,
        )
        if not self.keep_images:
            return saved
        return saved._image(data)  # the bytes just verified: no second read

    def _count(self, result: BatchResult, skipped: bool) -> None:
        p = self.progress
        if isinstance(result, FluxError):
            p = dataclasses.replace(p, failed=p.failed + 1, retries=p.retries + result.attempts - 1)
        elif skipped:
            p = dataclasses.replace(p, skipped=p.skipped + 1)
        else:
            p = dataclasses.replace(p, done=p.done + 1, retries=p.retries + result.attempts - 1)
        self.progress = dataclasses.replace(p, elapsed=time.perf_counter() - self._start)
        if self.on_progress is not None:
            self.on_progress(self.progress)


class BatchIterator:
    """The results of `FluxClient.iter_many`, as ``(index, result)`` pairs as they end.

    The work runs in a task of its own, so a plain ``async for`` is enough, and leaving
    the loop early (``break``, an exception) cancels what is still in flight. Use it as
    ``async with`` (or call `aclose`) to also wait until that cancellation has finished.
    """

    def __init__(self, batch: Batch) -> None:
        self._batch = batch
        self._runner: _Runner | None = None
        self._finished = False

    @property
    def progress(self) -> BatchProgress:
        """Counts so far."""
        return self._batch.progress

    def __aiter__(self) -> BatchIterator:
        return self

    async def __anext__(self) -> tuple[int, BatchResult]:
        if self._finished:
            raise StopAsyncIteration
        if self._runner is None:
            self._runner = _Runner(self._batch)
        try:
            return await self._runner.receive.receive()
        except anyio.EndOfStream:
            await self._runner.done.wait()
            self._finished = True
            self._runner.receive.close()
            if self._runner.failure is not None:
                raise self._runner.failure from None
            raise StopAsyncIteration from None

    async def __aenter__(self) -> BatchIterator:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Cancel what is still running and wait until it has stopped."""
        self._finished = True
        if self._runner is not None:
            await self._runner.stop()

    def __del__(self) -> None:
        # A `break` drops the iterator without awaiting anything: cancel from here (a
        # plain call, safe in any task), and the runner cleans up in its own task.
        if self._runner is not None and not self._runner.done.is_set():
            self._runner.cancel()


class _Runner:
    """The task behind a `BatchIterator`, outside the caller's task so that the caller
    may stop iterating at any point without leaving a task group open across a yield."""

    def __init__(self, batch: Batch) -> None:
        self.send: MemoryObjectSendStream[tuple[int, BatchResult]]
        self.receive: MemoryObjectReceiveStream[tuple[int, BatchResult]]
        # No buffer: a worker hands over its result and only then takes the next item.
        self.send, self.receive = anyio.create_memory_object_stream(0)
        self.done = anyio.Event()
        self.scope = anyio.CancelScope()
        self.failure: BaseException | None = None
        self._batch = batch
        self._task = _spawn(self._run)
        batch.client._runners.add(self)

    async def _run(self) -> None:
        try:
            with self.scope:
                await self._batch.run(self.send.send)
        except anyio.get_cancelled_exc_class():
            raise  # the event loop is shutting down
        except BaseException as exc:  # handed to the caller at the end of iteration
            self.failure = exc
        finally:
            self.send.close()
            self.done.set()
            self._batch.client._runners.discard(self)

    def cancel(self) -> None:
        try:
            self.scope.cancel()
            self.receive.close()
        except Exception:  # noqa: S110 - at interpreter exit the loop may be gone
            pass

    async def stop(self) -> None:
        self.scope.cancel()
        with anyio.CancelScope(shield=True):
            await self.done.wait()
        self.receive.close()


def _spawn(run: Callable[[], Coroutine[Any, Any, None]]) -> object:
    """Start ``run`` as a task of its own on whichever event loop is running."""
    trio = sys.modules.get("trio")
    if trio is not None:
        try:
            trio.lowlevel.current_task()
        except RuntimeError:
            pass  # trio is imported, but this is asyncio
        else:
            return trio.lowlevel.spawn_system_task(run, context=contextvars.copy_context())
    import asyncio

    return asyncio.get_running_loop().create_task(run())
