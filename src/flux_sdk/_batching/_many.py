"""Many images from one client: several of one prompt, or a batch of many prompts.

`FluxClient` gets these methods from `ManyImages`; they only call the client's own
``generate`` (and, for batches, hand it to the batch engine, which never sees the client).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Literal, TypeVar, cast, overload

import anyio
import httpx

from flux_sdk._base._errors import ConfigError, FluxError, InvalidRequestError
from flux_sdk._base._models import MAX_SEED, GeneratedImage, GenerateRequest, JsonValue
from flux_sdk._base._options import check_positive_int
from flux_sdk._pipeline._call import make_request
from flux_sdk._policy._limits import ConcurrencyLimit
from flux_sdk._policy._shared import SharedLimit
from flux_sdk._spend._ledger import Budget
from flux_sdk._spend._meter import batch_budget
from flux_sdk._spend._pricing import Price, check_priced

if TYPE_CHECKING:  # the batch engine loads on a batch's first use, not on import
    from ._batch import Batch, BatchIterator, BatchProgress, SavedImage

__all__ = ["ManyImages", "all_or_error", "seeded"]


class ManyImages:
    """The methods of `FluxClient` that make more than one image."""

    concurrency: ConcurrencyLimit | SharedLimit
    _closed: bool
    prices: dict[str, Price | None]

    if TYPE_CHECKING:  # the client's own, which takes more; only what is called here

        async def generate(
            self,
            prompt_or_request: GenerateRequest,
            *,
            max_retries: int | None = None,
            deadline: float | None = None,
            timeout: float | httpx.Timeout | None = None,  # noqa: ASYNC109
        ) -> GeneratedImage: ...

        def _check_rules(self, request: GenerateRequest) -> None: ...

    async def generate_images(
        self,
        prompt_or_request: str | GenerateRequest,
        n: int,
        *,
        seed: int | None = None,
        steps: int | None = None,
        width: int | None = None,
        height: int | None = None,
        extra_body: dict[str, JsonValue] | None = None,
        max_retries: int | None = None,
        deadline: float | None = None,
        timeout: float | httpx.Timeout | None = None,  # noqa: ASYNC109 - per request, as httpx
    ) -> list[GeneratedImage]:
        """Generate ``n`` images of one prompt: all of them, or an error.

        One `generate` call per image, run concurrently within the client's limits.
        With a seed (given here or in the request) image ``i`` gets ``seed + i``, so the
        set is reproducible; without one the host picks each. Every request is checked
        before any is sent. The first error cancels the calls still running and is
        raised; images already made are dropped, and requests already sent may still be
        billed by the host. Other arguments are as for `generate`.
        """
        if self._closed:
            raise ConfigError("this FluxClient is closed; create a new one")
        first = make_request(prompt_or_request, seed, steps, width, height, extra_body)
        requests = seeded(first, check_positive_int(n, InvalidRequestError, "n"))
        for request in requests:
            self._check_rules(request)
        one = functools.partial(
            self.generate, max_retries=max_retries, deadline=deadline, timeout=timeout
        )
        return await all_or_error([functools.partial(one, request) for request in requests])

    @overload
    async def generate_many(
        self,
        items: Iterable[str | GenerateRequest],
        *,
        save_dir: str | os.PathLike[str] | None = ...,
        keep_images: Literal[True] = ...,
        on_progress: Callable[[BatchProgress], object] | None = ...,
        max_retries: int | None = ...,
        budget: float | None = ...,
        shard: tuple[int, int] | None = ...,
    ) -> list[GeneratedImage | FluxError]: ...

    @overload
    async def generate_many(
        self,
        items: Iterable[str | GenerateRequest],
        *,
        save_dir: str | os.PathLike[str],
        keep_images: Literal[False],
        on_progress: Callable[[BatchProgress], object] | None = ...,
        max_retries: int | None = ...,
        budget: float | None = ...,
        shard: tuple[int, int] | None = ...,
    ) -> list[SavedImage | FluxError]: ...

    @overload
    async def generate_many(
        self,
        items: Iterable[str | GenerateRequest],
        *,
        save_dir: str | os.PathLike[str] | None = ...,
        keep_images: bool,
        on_progress: Callable[[BatchProgress], object] | None = ...,
        max_retries: int | None = ...,
        budget: float | None = ...,
        shard: tuple[int, int] | None = ...,
    ) -> list[GeneratedImage | SavedImage | FluxError]: ...

    async def generate_many(
        self,
        items: Iterable[str | GenerateRequest],
        *,
        save_dir: str | os.PathLike[str] | None = None,
        keep_images: bool = True,
        on_progress: Callable[[BatchProgress], object] | None = None,
        max_retries: int | None = None,
        budget: float | None = None,
        shard: tuple[int, int] | None = None,
    ) -> (
        list[GeneratedImage | FluxError]
        | list[SavedImage | FluxError]
        | list[GeneratedImage | SavedImage | FluxError]
    ):
        """Generate an image for each item; results in input order.

        Items are prompts or `GenerateRequest`s. A failed item is its `FluxError` in the
        list and the others go on; the client's retries and limits apply to each, and at
        most ``max_concurrency`` run at once. With ``save_dir`` each image is written as
        it arrives (see the batch docs for names, ``manifest.jsonl`` and resuming), and
        ``keep_images=False`` keeps only a `SavedImage` record of each in memory.
        ``on_progress`` is called with a `BatchProgress` each time an item ends.
        ``max_retries`` overrides the client's for every item. ``budget`` (USD) caps
        this batch's spend on top of the client's own budget: once the next attempt
        could pass it, no more items start, and each item not run is a `BudgetExceeded`
        (with ``save_dir``, a later run with a higher budget goes on from there).
        ``shard=(k, W)`` runs only the items whose index is ``k`` modulo ``W``, so W
        processes given the same items fill one ``save_dir`` together; the list then
        holds this shard's results, in index order (see the batch docs).
        """
        batch = self._batch(items, save_dir, keep_images, on_progress, max_retries, budget, shard)
        return cast("list[GeneratedImage | FluxError]", await batch.collect())

    def iter_many(
        self,
        items: Iterable[str | GenerateRequest],
        *,
        save_dir: str | os.PathLike[str] | None = None,
        keep_images: bool = True,
        on_progress: Callable[[BatchProgress], object] | None = None,
        max_retries: int | None = None,
        budget: float | None = None,
        shard: tuple[int, int] | None = None,
    ) -> BatchIterator:
        """Like `generate_many`, but hands over ``(index, result)`` as each item ends.

        Read the results inside ``async with client.iter_many(items) as results:`` with
        ``async for index, result in results:``. Each result can be written and dropped,
        so memory follows the concurrency limit, not the batch size. Leaving the block
        cancels the rest and waits for it to stop. ``shard`` is as for `generate_many`;
        the indices are the batch's own.
        """
        batch = self._batch(items, save_dir, keep_images, on_progress, max_retries, budget, shard)
        return batch.iterate()

    def _batch(
        self,
        items: Iterable[str | GenerateRequest],
        save_dir: str | os.PathLike[str] | None,
        keep_images: bool,
        on_progress: Callable[[BatchProgress], object] | None,
        max_retries: int | None,
        budget: float | None = None,
        shard: tuple[int, int] | None = None,
    ) -> Batch:
        if self._closed:
            raise ConfigError("this FluxClient is closed; create a new one")
        limit = None
        if budget is not None:
            limit = Budget(budget, what="the batch's budget")
            check_priced(self.prices, "budget=")

        async def generate(request: GenerateRequest, max_retries: int | None) -> GeneratedImage:
            token = batch_budget.set(limit)
            try:
                return await self.generate(request, max_retries=max_retries)
            finally:
                batch_budget.reset(token)

        from ._batch import Batch

        return Batch(
            generate,
            items,
            limit=self.concurrency.ceiling,
            concurrency=lambda: self.concurrency.limit,
            save_dir=save_dir,
            keep_images=keep_images,
            on_progress=on_progress,
            max_retries=max_retries,
            shard=shard,
        )


_T = TypeVar("_T")


async def all_or_error(calls: Sequence[Callable[[], Awaitable[_T]]]) -> list[_T]:
    """Run every call concurrently; their results in order, or the first exception
    raised, once the others have been cancelled and have stopped."""
    results: list[_T | None] = [None] * len(calls)
    failure: list[Exception] = []

    async def run(index: int) -> None:
        try:
            results[index] = await calls[index]()
        except Exception as exc:  # the first one is raised below, as itself
            if not failure:
                failure.append(exc)
            group.cancel_scope.cancel()

    async with anyio.create_task_group() as group:
        for index in range(len(calls)):
            group.start_soon(run, index)
    if failure:
        raise failure[0]
    return results  # type: ignore[return-value]  # every slot was filled


def seeded(request: GenerateRequest, count: int) -> list[GenerateRequest]:
    """``count`` copies of ``request``; with a seed, image ``i`` gets ``seed + i``."""
    if request.seed is None:
        return [request] * count
    last = request.seed + count - 1
    if last > MAX_SEED:
        raise InvalidRequestError(
            f"seeds {request.seed} to {last} for {count} images run past {MAX_SEED}; "
            "use a smaller seed"
        )
    return [request.replace(seed=request.seed + i) for i in range(count)]
