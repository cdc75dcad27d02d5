"""The two middleware shapes, how a chain is built, and the `Deadline` layer.

A middleware is ``async def layer(call, call_next)``: it may look at or change the
`Call`, call ``call_next(call)`` (the rest of the chain) zero or more times, and return
or replace what comes back. It lives in one of two places:

- **per call** (``FluxClient(middleware=...)``), outside the retries and the limits:
  it runs once per ``generate`` and returns the `GeneratedImage`. Caches, circuit
  breakers, routing and hedging go here: a cache hit then holds no concurrency slot
  and spends no retry.
- **per attempt** (``FluxClient(attempt_middleware=...)``), inside the retries and
  the limits: it runs once per HTTP request (every retry, every poll of a queue host)
  and returns the ``httpx.Response``. Headers, tracing of each request and fault
  injection go here.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import anyio
import httpx

from flux_sdk._base._errors import RequestTimeout
from flux_sdk._base._models import GeneratedImage

from ._call import Call

__all__ = ["AttemptMiddleware", "AttemptNext", "CallNext", "Deadline", "Middleware", "chain"]

CallNext = Callable[[Call], Awaitable[GeneratedImage]]
"""The rest of a per-call chain: ``await call_next(call)`` gives the image."""

Middleware = Callable[[Call, CallNext], Awaitable[GeneratedImage]]
"""``async def middleware(call, call_next) -> GeneratedImage``: runs once per call."""

AttemptNext = Callable[[Call], Awaitable[httpx.Response]]
"""The rest of a per-attempt chain: ``await call_next(call)`` sends ``call.http_request``."""

AttemptMiddleware = Callable[[Call, AttemptNext], Awaitable[httpx.Response]]
"""``async def middleware(call, call_next) -> httpx.Response``: runs once per request."""

_R = TypeVar("_R")


def chain(
    layers: Sequence[Callable[[Call, Callable[[Call], Awaitable[_R]]], Awaitable[_R]]],
    innermost: Callable[[Call], Awaitable[_R]],
) -> Callable[[Call], Awaitable[_R]]:
    """Compose ``layers`` around ``innermost``, built once; the first layer is outermost."""
    call_next = innermost
    for layer in reversed(layers):
        call_next = _bind(layer, call_next)
    return call_next


def _bind(
    layer: Callable[[Call, Callable[[Call], Awaitable[_R]]], Awaitable[_R]],
    call_next: Callable[[Call], Awaitable[_R]],
) -> Callable[[Call], Awaitable[_R]]:
    async def run(call: Call) -> _R:
        return await layer(call, call_next)

    return run


class Deadline:
    """Bounds a whole call: every attempt, backoff sleep and poll interval included.

    The client puts it outermost (``FluxClient(deadline=...)``, or ``deadline=`` on one
    call), so retries and failover cannot outlive the caller's budget; the retry policy
    sees the deadline and does not start a retry that could not finish in time. Running
    out raises `RequestTimeout` carrying the attempts made so far.
    """

    async def __call__(self, call: Call, call_next: CallNext) -> GeneratedImage:
        seconds = call.deadline
        if seconds is None or math.isinf(seconds):
            return await call_next(call)
        with anyio.CancelScope(deadline=anyio.current_time() + seconds):
            return await call_next(call)
        # Only reached when the scope's deadline cancelled the call.
        error = RequestTimeout(
            f"{call.provider_name}: gave up after the {seconds:g} s deadline"
            + (f" ({call.attempts} attempts)" if call.attempts else "")
            + "; raise deadline=... if calls this slow are expected",
            provider=call.provider_name,
        )
        error.attempts = call.attempts
        error.previous = tuple(call.errors)
        raise error

    def __repr__(self) -> str:
        return "Deadline()"
