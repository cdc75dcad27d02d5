"""Retrying what can succeed on a second try, without turning an outage into a storm."""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Awaitable, Callable

import anyio

from ._errors import FluxError
from ._events import FluxEvent, current_call, logger
from ._middleware import CallNext
from ._models import GeneratedImage, GenerateRequest

__all__ = ["Retry", "RetryBudget"]

Sleep = Callable[[float], Awaitable[None]]


class RetryBudget:
    """A sack of retry tokens shared by every call of a client (or of several clients).

    It starts full, holding ``floor`` tokens, and never holds more. Each new call drops in
    ``ratio`` of a token and each success one whole token; each retry takes one out, and
    when the sack is empty errors surface at once instead of being retried. Under a total
    outage only the per-call share comes in, so a client makes at most
    ``(1 + ratio) x calls + floor`` attempts; while most calls succeed, retries flow freely.
    This is the idea of Finagle's retry budget and the AWS SDKs' retry quota.
    """

    def __init__(self, *, ratio: float = 0.2, floor: float = 10.0) -> None:
        if ratio < 0 or floor < 0:
            raise ValueError("ratio and floor must not be negative")
        self.ratio = ratio
        self.floor = floor
        self._tokens = floor

    @property
    def tokens(self) -> float:
        """Retries that could start now."""
        return self._tokens

    def on_call(self) -> None:
        self._tokens = min(self.floor, self._tokens + self.ratio)

    def on_success(self) -> None:
        self._tokens = min(self.floor, self._tokens + 1.0)

    def try_spend(self) -> bool:
        """Take a token for one retry, if there is one."""
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True

    def __repr__(self) -> str:
        return f"RetryBudget(ratio={self.ratio}, floor={self.floor}, tokens={self._tokens:.1f})"


class Retry:
    """Middleware that retries failures whose ``retryable`` is true.

    Backoff is exponential with full jitter: the n-th retry waits a random time between 0
    and ``min(max_backoff, backoff * 2**(n-1))`` seconds. A ``Retry-After`` (or
    ``retry-after-ms``) from the provider is waited instead, up to ``max_retry_after``;
    a longer demand raises the error at once, ``retry_after`` set. A retry whose wait
    would cross the call's deadline is not started, nor one the budget cannot pay for.

    The first attempt runs outside tenacity, so a call that succeeds pays nothing for
    the retry machinery. ``sleep`` can be replaced (tests pass one that records and
    returns at once).
    """

    def __init__(
        self,
        max_retries: int = 3,
        *,
        backoff: float = 0.5,
        max_backoff: float = 20.0,
        max_retry_after: float = 120.0,
        budget: RetryBudget | None = None,
        sleep: Sleep | None = None,
    ) -> None:
        if not isinstance(max_retries, int) or max_retries < 0:
            raise ValueError(f"max_retries must be a non-negative integer (got {max_retries!r})")
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.max_retry_after = max_retry_after
        self.budget = budget if budget is not None else RetryBudget()
        self._sleep: Sleep = sleep if sleep is not None else anyio.sleep

    def __repr__(self) -> str:
        return f"Retry(max_retries={self.max_retries}, budget={self.budget!r})"

    async def __call__(self, request: GenerateRequest, call_next: CallNext) -> GeneratedImage:
        call = current_call.get()
        limit = self.max_retries
        if call is not None and call.max_retries is not None:
            limit = call.max_retries
        self.budget.on_call()
        try:
            image = await call_next(request)
        except FluxError as exc:
            if not exc.retryable or limit == 0:
                raise
            return await self._again(request, call_next, exc, limit)
        self.budget.on_success()
        return image

    async def _again(
        self, request: GenerateRequest, call_next: CallNext, first: FluxError, limit: int
    ) -> GeneratedImage:
        """Attempts 2 and on, driven by tenacity; the first failure is replayed into it."""
        from tenacity import AsyncRetrying, RetryCallState, retry_if_exception

        errors = [first]
        replay: list[FluxError] = [first]

        async def attempt() -> GeneratedImage:
            if replay:
                raise replay.pop()
            try:
                return await call_next(request)
            except FluxError as exc:
                errors.append(exc)
                raise

        def wait(state: RetryCallState) -> float:
            after = getattr(_error(state), "retry_after", None)
            if after is not None:
                return float(after)
            ceiling = min(self.max_backoff, self.backoff * 2.0 ** (state.attempt_number - 1))
            return ceiling * _random()

        def stop(state: RetryCallState) -> bool:
            exc = _error(state)
            delay = state.upcoming_sleep
            if state.attempt_number > limit or exc is None:
                return True
            if getattr(exc, "retry_after", None) is not None and delay > self.max_retry_after:
                return True  # the provider asks for longer than we wait: surface it now
            deadline = anyio.current_effective_deadline()
            if not math.isinf(deadline) and anyio.current_time() + delay >= deadline:
                return True
            return not self.budget.try_spend()

        def before_sleep(state: RetryCallState) -> None:
            exc = _error(state)
            delay = state.upcoming_sleep
            logger.info(
                "retrying %s in %.2f s after %s (attempt %d of %d)",
                exc.provider if exc else "?",
                delay,
                _reason(exc),
                state.attempt_number + 1,
                limit + 1,
            )
            call = current_call.get()
            if call is not None:
                call.emit(
                    FluxEvent(
                        "retry",
                        provider=call.provider,
                        attempt=state.attempt_number,
                        error=exc,
                        delay=delay,
                    )
                )

        retrying = AsyncRetrying(
            retry=retry_if_exception(lambda e: isinstance(e, FluxError) and e.retryable),
            wait=wait,
            stop=stop,
            sleep=self._sleep,
            before_sleep=before_sleep,
            reraise=True,
        )
        call = current_call.get()
        if call is not None:
            call.errors = errors
        try:
            image: GeneratedImage = await retrying(attempt)
        except FluxError as exc:
            exc.attempts = len(errors)
            exc.previous = tuple(errors[:-1])
            raise
        self.budget.on_success()
        return dataclasses.replace(image, attempts=len(errors) + 1)


def _error(state: object) -> FluxError | None:
    outcome = getattr(state, "outcome", None)
    exc = outcome.exception() if outcome is not None else None
    return exc if isinstance(exc, FluxError) else None


def _reason(exc: FluxError | None) -> str:
    if exc is None:
        return "an error"
    status = getattr(exc, "status_code", None)
    return f"{type(exc).__name__} (HTTP {status})" if status else type(exc).__name__


def _random() -> float:
    return random.random()  # noqa: S311  (jitter, not security)
