"""`SharedLimit`'s side of a held queue job (see `_hold`), kept apart from `_shared`,
which is at its size limit: the job's lease is renewed until the job ends, its later
requests take no lease, and the process's gate token goes back with the lease."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, Protocol

import anyio
import httpx

from flux_sdk._pipeline._call import Call
from flux_sdk._pipeline._middleware import AttemptNext

from ._hold import Release, holding, keep
from ._limits import RateLimit
from ._redis_client import Unavailable

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["gated", "holding", "keep", "renewed", "shared_held_step"]


class _Shared(Protocol):
    """What a held job needs of a `SharedLimit` (declared here, as `_shared` imports
    this module)."""

    in_flight: int
    rate: float | None
    _local_rate: RateLimit | None

    async def _connect(self) -> Redis | None: ...
    async def _take(self, client: Redis, lease: str | None) -> None: ...
    async def _renew(self, lease: str) -> None: ...
    async def _release(self, lease: str) -> None: ...
    async def _learn(self, response: httpx.Response) -> None: ...
    async def _quietly(self, work: Any) -> None: ...
    async def _lost(
        self, exc: Unavailable, call: Call, call_next: AttemptNext
    ) -> httpx.Response: ...


def renewed(limit: _Shared, lease: str | None) -> Release:
    """Count a request (or the job it starts) in flight and renew its lease, if it has
    one, until the returned release is awaited: it stops the renewal, then gives the
    lease back."""
    import asyncio  # here, not at the top: a client on trio never loads it

    limit.in_flight += 1
    renewing = None if lease is None else asyncio.ensure_future(limit._renew(lease))

    async def end(ok: bool) -> None:
        limit.in_flight -= 1
        try:
            if renewing is not None:
                renewing.cancel()
                # asyncio.wait, not `await renewing`: the renewal's CancelledError is
                # not ours to swallow, and a cancel of this call while it winds down
                # must reach the caller (it was lost, and the call went on).
                await asyncio.wait({renewing})
                if not renewing.cancelled():
                    renewing.result()  # a renewal that broke says why
        finally:
            if lease is not None:
                await limit._release(lease)

    return end


@contextlib.asynccontextmanager
async def gated(call: Call, limit: object, gate: anyio.Semaphore) -> AsyncIterator[None]:
    """Hold one of this process's gate tokens for a request, or for its job if it
    started one (the token then goes back with the job's lease)."""
    await gate.acquire()
    try:
        yield
    finally:
        held = getattr(call, "held", None)
        first = None if held is None else held.get(id(limit))
        if held is None or first is None:
            gate.release()
        else:
            held[id(limit)] = functools.partial(_then_release, first, gate)


async def _then_release(first: Release, gate: anyio.Semaphore, ok: bool) -> None:
    try:
        await first(ok)
    finally:
        gate.release()


async def shared_held_step(limit: _Shared, call: Call, call_next: AttemptNext) -> httpx.Response:
    """A held job's poll, result or download through its `SharedLimit`: no lease (the
    job has one), only the shared rate, as every request has."""
    if limit.rate is None:
        return await call_next(call)
    client = await limit._connect()
    if client is None:
        assert limit._local_rate is not None
        return await limit._local_rate(call, call_next)
    try:
        await limit._take(client, None)
    except Unavailable as exc:  # nothing was sent yet
        return await limit._lost(exc, call, call_next)
    response = await call_next(call)
    await limit._quietly(limit._learn(response))
    return response
