"""The middleware shape, and the built-in layers that bound time, rate and concurrency.

A middleware is ``async def layer(request, call_next) -> GeneratedImage``: it may look at
or replace the request, call ``call_next`` (the rest of the chain) zero or more times,
and return or replace the image. A configurable one is a small class with ``__call__``,
as these are.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable

import anyio

from ._errors import RateLimitError, RequestTimeout
from ._events import current_call
from ._models import GeneratedImage, GenerateRequest

__all__ = ["CallNext", "ConcurrencyLimit", "Deadline", "Middleware", "RateLimit"]

CallNext = Callable[[GenerateRequest], Awaitable[GeneratedImage]]
"""The rest of the chain: call it with a request to get the image."""

Middleware = Callable[[GenerateRequest, CallNext], Awaitable[GeneratedImage]]
"""``async def middleware(request, call_next) -> GeneratedImage``, as in Starlette."""


def chain(layers: list[Middleware], innermost: CallNext) -> CallNext:
    """Compose ``layers`` around ``innermost``; the first layer runs outermost."""
    call = innermost
    for layer in reversed(layers):
        call = _bind(layer, call)
    return call


def _bind(layer: Middleware, call_next: CallNext) -> CallNext:
    async def call(request: GenerateRequest) -> GeneratedImage:
        return await layer(request, call_next)

    return call


class Deadline:
    """Bounds a whole call, every attempt and backoff sleep included.

    Inside it, the retry layer can see the deadline (``anyio.current_effective_deadline``)
    and does not start a retry that could not finish in time. Running out raises
    `RequestTimeout` with the attempts made so far.
    """

    def __init__(self, seconds: float | None = None) -> None:
        if seconds is not None and not seconds > 0:
            raise ValueError(f"a deadline must be a positive number of seconds (got {seconds!r})")
        self.seconds = seconds

    def __repr__(self) -> str:
        return f"Deadline({self.seconds!r})"

    async def __call__(self, request: GenerateRequest, call_next: CallNext) -> GeneratedImage:
        call = current_call.get()
        seconds = call.deadline if call is not None and call.deadline is not None else self.seconds
        if seconds is None or math.isinf(seconds):
            return await call_next(request)
        with anyio.CancelScope(deadline=anyio.current_time() + seconds):
            return await call_next(request)
        # Only reached when the scope's deadline cancelled the call.
        error = RequestTimeout(
            f"gave up after the {seconds:g} s deadline"
            + (f" ({call.attempts} attempts)" if call is not None and call.attempts else ""),
            provider=call.provider if call is not None else None,
        )
        if call is not None:
            error.attempts = max(call.attempts, 1)
            error.previous = tuple(call.errors)
        raise error


class ConcurrencyLimit:
    """Bounds how many requests are in flight at once.

    Think of a sack holding ``limit`` tokens: a request takes one before it is sent and
    puts it back when its answer has been read, so the ten-thousandth coroutine of an
    ``asyncio.gather`` simply waits its turn. One instance can be shared by several
    clients to bound them together. It sits inside the retry layer, so a backoff sleep
    holds no token.
    """

    def __init__(self, limit: int) -> None:
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise ValueError(f"a concurrency limit must be a positive integer (got {limit!r})")
        self.limit = limit
        self._semaphore = anyio.Semaphore(limit)

    @property
    def in_flight(self) -> int:
        """Requests holding a token right now."""
        return self.limit - self._semaphore.value

    def __repr__(self) -> str:
        return f"ConcurrencyLimit({self.limit}, in_flight={self.in_flight})"

    async def __call__(self, request: GenerateRequest, call_next: CallNext) -> GeneratedImage:
        async with self._semaphore:
            return await call_next(request)


class RateLimit:
    """Spaces requests to at most ``rate`` per second, with bursts of up to ``burst``.

    Each request reserves the next free slot at once (a virtual-time token bucket), so
    waiters are served in order without waking each other. After a 429 the rate halves
    (at most once a second, down to ``min_rate``); each success then wins back a
    twentieth of ``rate`` until the configured rate is reached again. Inside the retry
    layer, so every attempt counts.
    """

    def __init__(
        self,
        rate: float,
        *,
        burst: int = 1,
        min_rate: float | None = None,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], Awaitable[None]] | None = None,
    ) -> None:
        if not rate > 0 or math.isinf(rate):
            raise ValueError(
                f"rate must be a positive number of requests per second (got {rate!r})"
            )
        if not isinstance(burst, int) or burst < 1:
            raise ValueError(f"burst must be a positive integer (got {burst!r})")
        self.rate = rate
        self.burst = burst
        self.min_rate = min_rate if min_rate is not None else rate / 16
        self.current_rate = rate
        self._clock = clock if clock is not None else anyio.current_time
        self._sleep = sleep if sleep is not None else anyio.sleep
        self._next_slot = -math.inf
        self._last_cut = -math.inf

    def __repr__(self) -> str:
        return f"RateLimit({self.rate}, current_rate={self.current_rate:.3g})"

    def reserve(self) -> float:
        """Take the next slot; return how long to wait for it (0 when free now)."""
        now = self._clock()
        interval = 1.0 / self.current_rate
        slot = max(self._next_slot, now - (self.burst - 1) * interval)
        self._next_slot = slot + interval
        return max(0.0, slot - now)

    def on_rate_limited(self) -> None:
        now = self._clock()
        if now - self._last_cut >= 1.0:
            self._last_cut = now
            self.current_rate = max(self.min_rate, self.current_rate / 2)

    def on_success(self) -> None:
        if self.current_rate < self.rate:
            self.current_rate = min(self.rate, self.current_rate + self.rate / 20)

    async def __call__(self, request: GenerateRequest, call_next: CallNext) -> GeneratedImage:
        wait = self.reserve()
        if wait > 0:
            await self._sleep(wait)
        try:
            image = await call_next(request)
        except RateLimitError:
            self.on_rate_limited()
            raise
        self.on_success()
        return image
