"""Limits on the requests a client sends: how many at once, and how many per second.

Both are per-attempt middleware (see `_middleware`): the client puts them inside the
retries, so every HTTP request counts against a rate, a flow's poll as much as a submit,
and a backoff sleep holds no slot. A concurrency slot is one request's, except on a
queue host, which counts jobs: there a job keeps the slot its submit took until its
flow ends, poll intervals included (see `_hold`). One instance can be shared by several
clients to bound them together.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import anyio
import httpx

from flux_sdk._base._errors import ConfigError
from flux_sdk._base._options import check_callable, check_non_negative, check_positive_int
from flux_sdk._pipeline._call import Call
from flux_sdk._pipeline._middleware import AttemptNext

from ._hold import holding, keep

__all__ = ["CombinedLimit", "ConcurrencyLimit", "RateLimit", "run_within"]


class ConcurrencyLimit:
    """Bounds how many requests (and queue jobs) are in flight at once.

    Think of a sack holding ``limit`` tokens: a request takes one before it is sent and
    puts it back when its answer has been read, so the ten-thousandth coroutine of an
    ``asyncio.gather`` simply waits its turn. A queue host's job keeps the token its
    accepted submit took until the job's result is in (or it failed or was cancelled):
    its polls and download take none.
    """

    def __init__(self, limit: int) -> None:
        self.limit = check_positive_int(limit, ConfigError, "a concurrency limit")
        self._semaphore = _semaphore(limit)

    @property
    def in_flight(self) -> int:
        """Requests and queue jobs holding a token right now."""
        return self.limit - self._semaphore.value

    @property
    def ceiling(self) -> int:
        """The most requests it can ever let through at once (a batch runs this many
        workers): ``limit`` here, ``max`` for an `AdaptiveLimit`."""
        return self.limit

    def __repr__(self) -> str:
        return f"ConcurrencyLimit({self.limit}, in_flight={self.in_flight})"

    async def __call__(self, call: Call, call_next: AttemptNext) -> httpx.Response:
        if holding(call, self):  # a held job's poll or download: its token is taken
            return await call_next(call)
        semaphore = self._semaphore
        await semaphore.acquire()
        kept = False
        try:
            call.concurrency = self.limit
            response = await call_next(call)
            kept = keep(call, self, response, self._give_back)
            return response
        except Exception as exc:  # a submit whose answer was lost may still run there
            kept = keep(call, self, exc, self._give_back)
            raise
        finally:
            if not kept:
                semaphore.release()

    async def _give_back(self, ok: bool) -> None:
        self._semaphore.release()


def _semaphore(limit: int) -> anyio.Semaphore:
    """A semaphore that takes a free token without first yielding to the event loop.

    anyio's default yields on every acquire, one more turn of the loop per request
    (about a tenth of a small request's CPU at one in flight); the send that follows
    yields anyway, and waiters are still served in order. anyio before 4.5 has no such
    option and keeps its default.
    """
    try:
        return anyio.Semaphore(limit, fast_acquire=True)
    except TypeError:
        return anyio.Semaphore(limit)


class RateLimit:
    """Spaces requests to at most ``rate`` per second, with bursts of up to ``burst``.

    Each request reserves the next free slot at once (a virtual-time token bucket), so
    waiters are served in order without waking each other; a waiter that is cancelled
    (or whose deadline passes) before its slot gives the slot back. After a 429 the rate
    halves (at most once a second, down to ``min_rate``); each success then wins back a
    twentieth of ``rate`` until the configured rate is reached again.
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
        per_second = "a number of requests per second"
        rate = check_non_negative(rate, ConfigError, "rate_limit (RateLimit rate)", per_second)
        if rate == 0:
            raise ConfigError(
                "rate_limit (RateLimit rate) must be above 0 requests per second (got 0)"
            )
        self.burst = check_positive_int(burst, ConfigError, "RateLimit burst")
        if min_rate is not None:
            min_rate = check_non_negative(min_rate, ConfigError, "RateLimit min_rate", per_second)
            if not 0 < min_rate <= rate:
                raise ConfigError(
                    f"RateLimit min_rate must be above 0 and at most rate={rate:g} "
                    f"(got {min_rate!r})"
                )
        for name, hook in (("clock", clock), ("sleep", sleep)):
            if hook is not None:
                check_callable(hook, ConfigError, f"RateLimit {name}")
        self.rate = rate
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
        return self._reserve()[0]

    def _reserve(self) -> tuple[float, float]:
        now = self._clock()
        interval = 1.0 / self.current_rate
        slot = max(self._next_slot, now - (self.burst - 1) * interval)
        self._next_slot = slot + interval
        return max(0.0, slot - now), interval

    def release(self, interval: float) -> None:
        """Give back a slot that was reserved and will not be used."""
        self._next_slot -= interval

    def on_rate_limited(self) -> None:
        now = self._clock()
        if now - self._last_cut >= 1.0:
            self._last_cut = now
            self.current_rate = max(self.min_rate, self.current_rate / 2)

    def on_success(self) -> None:
        if self.current_rate < self.rate:
            self.current_rate = min(self.rate, self.current_rate + self.rate / 20)

    async def __call__(self, call: Call, call_next: AttemptNext) -> httpx.Response:
        wait, interval = self._reserve()
        if wait > 0:
            try:
                await self._sleep(wait)
            except BaseException:  # cancelled before its slot: the slot is not used
                self.release(interval)
                raise
        response = await call_next(call)
        if response.status_code == 429:
            self.on_rate_limited()
        elif response.is_success:
            self.on_success()
        return response


class CombinedLimit(ConcurrencyLimit):
    """The limits of a routed client's routes, summed (each shared limit once): what a
    batch sizes its workers by and shows in its progress. It limits nothing itself."""

    def __init__(self, limits: Iterable[Any]) -> None:  # ConcurrencyLimits, SharedLimits
        self.parts = list({id(limit): limit for limit in limits}.values())

    @property
    def limit(self) -> int:  # type: ignore[override]  # a sum here, an attribute there
        return sum(part.limit for part in self.parts)

    @property
    def ceiling(self) -> int:
        return sum(part.ceiling for part in self.parts)

    @property
    def in_flight(self) -> int:
        return sum(part.in_flight for part in self.parts)

    def __repr__(self) -> str:
        return f"CombinedLimit({self.parts!r})"

    async def __call__(self, call: Call, call_next: AttemptNext) -> httpx.Response:
        return await call_next(call)


async def run_within(
    concurrency: ConcurrencyLimit | None,
    rate: RateLimit | None,
    call: Call,
    call_next: AttemptNext,
) -> httpx.Response:
    """``call_next`` within a rate limit, then a concurrency limit (either may be None):
    how `SharedLimit` runs on its per-process fallback."""
    send = call_next
    if concurrency is not None:
        limit, inner = concurrency, send

        async def send(call: Call) -> httpx.Response:
            return await limit(call, inner)

    if rate is not None:
        return await rate(call, send)
    return await send(call)
