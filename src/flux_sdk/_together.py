"""Several calls that make one result together: all of them, or the first error.

`FluxClient.generate_images` runs one call per image; a caller who asked for four
images of one prompt wants four, as OpenAI's ``n`` gives all or raises. So the first
failure cancels the calls still running and is raised as itself (not in an exception
group), and nothing that already succeeded is returned.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import anyio

from ._errors import InvalidRequestError
from ._models import MAX_SEED, GenerateRequest

__all__ = ["all_or_error", "seeded"]

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
