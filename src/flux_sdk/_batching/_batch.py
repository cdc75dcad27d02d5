"""Batches: many requests through one generate function, optionally saved to a directory.

`Batch` runs any ``generate(request, max_retries)`` coroutine function, not a client, so
a client, a router over several providers or a test double can all run one. It knows
nothing of HTTP; the directory and its manifest are `BatchDirectory`'s business.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, cast

import anyio

from flux_sdk._base._errors import BudgetExceeded, FluxError, InvalidRequestError
from flux_sdk._base._models import GeneratedImage, GenerateRequest
from flux_sdk._base._options import check_positive_int, check_retries

from ._manifest import MANIFEST, BatchDirectory, SavedImage, request_key, slug
from ._progress import BatchProgress, Outcome, advance
from ._shards import Shard, check_shard

if TYPE_CHECKING:
    from anyio.abc import TaskGroup
    from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

__all__ = [
    "MANIFEST",
    "Batch",
    "BatchIterator",
    "BatchProgress",
    "BatchResult",
    "Generate",
    "SavedImage",
    "request_key",
    "slug",
]

BatchResult = GeneratedImage | SavedImage | FluxError
"""One item's outcome: its image (in memory or on disk) or the error that ended it."""

Generate = Callable[[GenerateRequest, int | None], Awaitable[GeneratedImage]]
"""What a batch runs for each item: ``await generate(request, max_retries)``, where
``max_retries`` is None for the generator's own policy. It raises `FluxError` for an item
that failed; anything else it raises stops the batch."""

Emit = Callable[[tuple[int, BatchResult]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class _Invalid:
    """An item that is not a valid request: its error, and its prompt if it had one."""

    error: InvalidRequestError
    prompt: str | None


class Batch:
    """One run of many items: the engine behind `generate_many` and `iter_many`.

    Up to ``limit`` workers each take the next item, run it and hand its result over.
    ``concurrency`` is the client's limit now (an adaptive one moves between 1 and its
    ceiling, ``limit``): a worker takes a new item only while fewer items than that are
    running or waiting for a slow consumer, so the results held in memory follow the
    limit the host allows, not the ceiling. The progress reports it too.
    A failed item is its `FluxError`; only a directory that cannot be written
    (`SaveError`) or a bug stops the batch. A `BudgetExceeded` before any request of an
    item stops it cleanly: no more items start, each item not run is that error (with
    no manifest line, so a re-run does it), and the items in flight finish.
    With ``shard=(k, W)`` it runs only the items whose index is ``k`` modulo ``W``
    (indices stay the batch's own), for W processes filling one directory.
    """

    def __init__(
        self,
        generate: Generate,
        items: Iterable[str | GenerateRequest],
        *,
        limit: int,
        save_dir: str | os.PathLike[str] | None = None,
        keep_images: bool = True,
        on_progress: Callable[[BatchProgress], object] | None = None,
        max_retries: int | None = None,
        concurrency: Callable[[], int] | None = None,
        shard: Shard | None = None,
    ) -> None:
        if not keep_images and save_dir is None:
            raise InvalidRequestError(
                "keep_images=False needs save_dir: otherwise every image would be thrown away"
            )
        if max_retries is not None:
            check_retries(max_retries, InvalidRequestError)
        check_positive_int(limit, InvalidRequestError, "limit")
        self.generate = generate
        self.items = _prepare(items)
        self.shard = check_shard(shard)
        # The indices this run owns: all of them, or its shard's.
        self.indices = (
            range(len(self.items))
            if self.shard is None
            else range(self.shard[0], len(self.items), self.shard[1])
        )
        self.limit = limit
        self.save_dir = None if save_dir is None else Path(save_dir)
        self.keep_images = keep_images
        self.on_progress = on_progress
        self.max_retries = max_retries
        self.concurrency = concurrency
        self.progress = BatchProgress(total=len(self.indices))
        self._start = 0.0
        self._failure: BaseException | None = None
        self._out_of_budget: BudgetExceeded | None = None
        self._busy = 0  # items taken and not yet handed over
        self._freed = anyio.Event()  # set each time an item is handed over

    async def collect(self) -> list[BatchResult]:
        """Run every item (of this shard); their results, in index order."""
        results: dict[int, BatchResult] = {}

        async def keep(item: tuple[int, BatchResult]) -> None:
            results[item[0]] = item[1]

        await self.run(keep)
        return [results[index] for index in self.indices]

    def iterate(self) -> BatchIterator:
        """The results as they end, for ``async with batch.iterate() as results``."""
        return BatchIterator(self)

    async def run(self, emit: Emit) -> None:
        """Run every item and ``await emit((index, result))`` as each ends; raises what
        stopped the batch, once, after every worker has stopped."""
        directory = None
        if self.save_dir is not None:
            directory = await anyio.to_thread.run_sync(
                BatchDirectory, self.save_dir, len(self.items), self.shard
            )
        self._start = time.perf_counter()
        pending = iter(self.indices)
        try:
            async with anyio.create_task_group() as group:
                for _ in range(min(len(self.indices), self.limit)):
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
        directory: BatchDirectory | None,
        everyone: anyio.CancelScope,
    ) -> None:
        try:
            while True:
                await self._turn()
                index = next(pending, None)  # shared by every worker: taken once each
                if index is None:
                    return
                self._busy += 1
                try:
                    await self._item(index, emit, directory)
                finally:
                    self._busy -= 1
                    self._freed.set()
                    self._freed = anyio.Event()
        except anyio.get_cancelled_exc_class():
            raise
        except BaseException as exc:  # a full disk, a bug: stop the batch, raise it once
            if self._failure is None:
                self._failure = exc
            everyone.cancel()

    async def _turn(self) -> None:
        """Wait until fewer items are taken than the client's limit allows now. The limit
        moves when a request ends, and so does an item: waking on each is enough."""
        if self.concurrency is None:
            return
        while self._busy >= self.concurrency():
            await self._freed.wait()

    async def _item(self, index: int, emit: Emit, directory: BatchDirectory | None) -> None:
        if self._out_of_budget is not None:
            await emit((index, _not_run(self._out_of_budget)))
            return
        result, outcome = await self._one(index, directory)
        if isinstance(result, BudgetExceeded) and result.attempts == 0:
            self._out_of_budget = result  # nothing sent: left for a re-run
            await emit((index, result))
            return
        self._count(result, outcome)
        # Only then the next item: a worker holds at most one finished result.
        await emit((index, result))

    async def _one(
        self, index: int, directory: BatchDirectory | None
    ) -> tuple[BatchResult, Outcome]:
        item = self.items[index]
        if isinstance(item, _Invalid):
            if directory is not None:
                write = directory.record_error
                await anyio.to_thread.run_sync(write, index, None, None, item.prompt, item.error)
            return item.error, "failed"
        key = None
        if directory is not None:
            key = request_key(item)
            earlier = directory.earlier(index, item, key)
            if earlier is not None:
                found = await anyio.to_thread.run_sync(directory.verify, earlier)
                if found is not None:
                    saved, data = found  # the bytes just verified: no second read
                    return (saved._image(data) if self.keep_images else saved), "skipped"
        try:
            image = await self.generate(item, self.max_retries)
        except FluxError as exc:
            if directory is not None and not (
                isinstance(exc, BudgetExceeded) and exc.attempts == 0
            ):
                with anyio.CancelScope(shield=True):
                    write = directory.record_error
                    await anyio.to_thread.run_sync(write, index, key, item, item.prompt, exc)
            return exc, "failed"
        if directory is None or key is None:
            return image, "done"
        # Shielded: an image in hand has been paid for, so it is written even when the
        # batch is being cancelled (Ctrl-C, leaving an iter_many block).
        with anyio.CancelScope(shield=True):
            saved = await anyio.to_thread.run_sync(directory.store, index, key, item, image)
        return (dataclasses.replace(image, path=saved.path) if self.keep_images else saved), "done"

    def _count(self, result: BatchResult, outcome: Outcome) -> None:
        elapsed = time.perf_counter() - self._start
        self.progress = advance(
            self.progress,
            outcome,
            attempts=result.attempts,
            elapsed=elapsed,
            concurrency=None if self.concurrency is None else self.concurrency(),
        )
        if self.on_progress is not None:
            self.on_progress(self.progress)


class BatchIterator:
    """The results of `FluxClient.iter_many`: ``(index, result)`` pairs as items end.

    Read them inside ``async with``, which owns the batch's tasks::

        async with client.iter_many(prompts) as results:
            async for index, result in results:
                ...

    Leaving the block (at the end, by ``break`` or by an exception) cancels what is still
    in flight and waits until it has stopped, so no task or request outlives the block;
    an image that has already arrived is still saved. An error that stopped the batch
    (`SaveError`) is raised by the loop, after the results that came before it.
    """

    def __init__(self, batch: Batch) -> None:
        self._batch = batch
        self._state = "new"
        self._group: TaskGroup | None = None
        self._receive: MemoryObjectReceiveStream[tuple[int, BatchResult]] | None = None
        self._failure: Exception | None = None

    @property
    def progress(self) -> BatchProgress:
        """Counts so far."""
        return self._batch.progress

    async def __aenter__(self) -> BatchIterator:
        if self._state != "new":
            raise RuntimeError(
                "the results of one iter_many() call can be entered once; "
                "call iter_many() again for another run"
            )
        send: MemoryObjectSendStream[tuple[int, BatchResult]]
        # No buffer: a worker hands its result over and only then takes the next item.
        send, self._receive = anyio.create_memory_object_stream(0)
        group = anyio.create_task_group()
        await group.__aenter__()
        self._group, self._state = group, "open"
        group.start_soon(self._produce, send)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._group is None or self._state == "closed":
            return
        self._state = "closed"
        self._group.cancel_scope.cancel()
        try:
            # The body's own exception is not handed to the task group: it would come
            # out wrapped in an ExceptionGroup. It goes on as it was once this returns.
            await self._group.__aexit__(None, None, None)
        finally:
            if self._receive is not None:
                self._receive.close()

    def __aiter__(self) -> BatchIterator:
        self._check()
        return self

    async def __anext__(self) -> tuple[int, BatchResult]:
        self._check()
        assert self._receive is not None
        try:
            return await self._receive.receive()
        except anyio.EndOfStream:
            failure, self._failure = self._failure, None
            if failure is not None:
                raise failure from None
            raise StopAsyncIteration from None

    def _check(self) -> None:
        if self._state == "new":
            raise TypeError(
                "iter_many() results are read inside `async with`: write "
                "`async with client.iter_many(items) as results:` and then "
                "`async for index, result in results:` inside that block"
            )
        if self._state == "closed":
            raise RuntimeError(
                "iter_many() results can only be read inside their `async with` block; "
                "the block has ended and cancelled the rest of the batch"
            )

    async def _produce(self, send: MemoryObjectSendStream[tuple[int, BatchResult]]) -> None:
        with send:
            try:
                await self._batch.run(send.send)
            except Exception as exc:  # handed to the reader once the results run out
                self._failure = exc


def _not_run(cause: BudgetExceeded) -> BudgetExceeded:
    error = BudgetExceeded(
        f"not started: the budget ran out ({cause.message})",
        provider=cause.provider,
        budget=cause.budget,
        spent=cause.spent,
        needed=cause.needed,
    )
    error.attempts = 0
    return error


def _prepare(items: Iterable[str | GenerateRequest]) -> list[GenerateRequest | _Invalid]:
    """Turn each item into a request; a bad item becomes its error, the rest still run."""
    if isinstance(items, (str, bytes)):
        raise InvalidRequestError(
            "a batch takes a list of prompts, not a single string; "
            "for one image use generate(), or wrap it: [prompt]"
        )
    try:
        iterator = iter(items)
    except TypeError:
        raise InvalidRequestError(
            f"a batch takes an iterable of prompts or GenerateRequests, not {type(items).__name__}"
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
                error = InvalidRequestError(f"item {index}: {exc.message}")
                prepared.append(_Invalid(error, item))
        else:
            error = InvalidRequestError(
                f"item {index} is {type(item).__name__}, not a prompt or a GenerateRequest"
            )
            prepared.append(_Invalid(error, None))
    return prepared
