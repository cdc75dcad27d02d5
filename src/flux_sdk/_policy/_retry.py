"""Retrying what can succeed on a second try, without paying twice or storming a host."""

from __future__ import annotations

import math
import random
import warnings
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TypeVar

import anyio
from tenacity import AsyncRetrying, RetryCallState

from flux_sdk._base._errors import ConfigError, FluxError, ProviderError, TransportError
from flux_sdk._base._events import logger
from flux_sdk._base._options import check_callable, check_non_negative, check_retries
from flux_sdk._pipeline._call import Call
from flux_sdk.providers._base import StepKind

__all__ = ["Retry", "RetryBudget"]

Sleep = Callable[[float], Awaitable[None]]
_T = TypeVar("_T")

# A refusal that proves a queue did not take the job: it timed out reading it, it is
# rate limited, or it is unavailable. Any other answer to a submit might have queued it.
_SUBMIT_REFUSED = frozenset({408, 429, 503})
_UNSET = object()


class RetryBudget:
    """A sack of retry tokens shared by every call of a client (or of several clients).

    Each new call drops in ``ratio`` of a token and each success one whole token; each
    retry (or failover, or hedge) takes one out, and when the sack is empty errors
    surface at once instead of being retried. The sack starts full and holds at most
    ``capacity`` tokens, or ``in_flight`` tokens for each request of the most that were
    in flight at once so far, whichever is more: each request that raises that high-water
    mark brings its own token. So every request in flight can be refused once and
    retried: the last doubling of a limit's slow start, or a host's brief queue-full
    burst, refuses many requests within milliseconds, and with a fixed ten tokens the
    rest of that burst would surface as errors although the host asked for a retry.

    Under a total outage only the per-call share comes in, so a client makes at most
    ``(1 + ratio) x calls + max(capacity, in_flight x most requests in flight)``
    attempts: a bound in what you control (calls and concurrency), with no clock in it.
    A per-second minimum (Finagle's) would not scale with concurrency, and under an
    outage would grow with its length. Only requests past the concurrency limit count:
    ten thousand calls waiting for 16 slots widen the bound by 16, not ten thousand.
    ``in_flight=0`` keeps the sack at ``capacity`` (the earlier bound, ``(1 + ratio)
    x calls + capacity``). This is the idea of Finagle's retry budget and the AWS SDKs'
    retry quota.
    """

    def __init__(
        self,
        *,
        ratio: float = 0.2,
        capacity: float = 10.0,
        in_flight: float = 1.0,
        floor: object = _UNSET,
    ) -> None:
        if floor is not _UNSET:
            warnings.warn(
                "RetryBudget(floor=...) is now RetryBudget(capacity=...): it is the most "
                "the sack holds, not a minimum",
                DeprecationWarning,
                stacklevel=2,
            )
            capacity = floor  # type: ignore[assignment]
        self.ratio = check_non_negative(ratio, ConfigError, "RetryBudget ratio")
        self.capacity = check_non_negative(capacity, ConfigError, "RetryBudget capacity")
        self.in_flight = check_non_negative(in_flight, ConfigError, "RetryBudget in_flight")
        self._tokens = self.capacity
        self._sending = 0  # requests in flight now
        self._most = 0  # the most requests in flight at once so far

    @property
    def floor(self) -> float:
        """Deprecated name of ``capacity``."""
        warnings.warn(
            "RetryBudget.floor is now RetryBudget.capacity", DeprecationWarning, stacklevel=2
        )
        return self.capacity

    @property
    def tokens(self) -> float:
        """Retries that could start now."""
        return self._tokens

    @property
    def size(self) -> float:
        """The most the sack holds now: ``capacity``, or more once more requests were in
        flight at once."""
        return max(self.capacity, self.in_flight * self._most)

    def on_call(self) -> None:
        self._tokens = min(self.size, self._tokens + self.ratio)

    def on_success(self) -> None:
        self._tokens = min(self.size, self._tokens + 1.0)

    def on_request_start(self) -> None:
        """A request goes out (past the limits); one more in flight than ever before
        brings the sack its token."""
        self._sending += 1
        if self._sending > self._most:
            before = self.size
            self._most = self._sending
            self._tokens += self.size - before

    def on_request_end(self) -> None:
        """A request started with `on_request_start` has ended, however it ended."""
        self._sending = max(0, self._sending - 1)

    def try_spend(self) -> bool:
        """Take a token for one retry, if there is one."""
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True

    def __repr__(self) -> str:
        return (
            f"RetryBudget(ratio={self.ratio}, capacity={self.capacity}, "
            f"in_flight={self.in_flight}, tokens={self._tokens:.1f})"
        )


class Retry:
    """The retry policy: which failures to try again, when, and how often.

    A failure is retried when its ``retryable`` is true and the request is safe to send
    again: a queue ``"submit"`` only when the error proves the job was not accepted (an
    accepted job is polled, never submitted twice). Backoff is exponential with full
    jitter: the n-th retry waits a random time between 0 and ``min(max_backoff,
    backoff * 2**(n-1))`` seconds. A ``Retry-After`` (or ``retry-after-ms``) from the
    provider is waited instead, up to ``max_retry_after``; a longer demand raises the
    error at once, ``retry_after`` set. A retry whose wait would cross the call's deadline
    is not started, nor one the budget cannot pay for. ``max_retries`` counts retries of
    each request (a call's own ``max_retries=`` overrides it). ``sleep`` serves every
    wait of the client's calls, backoff and a flow's poll intervals alike: tests pass one
    that records and returns at once. With ``retry_maybe_billed=False`` a failure the
    host may have charged for (``error.billed == "maybe"``: a timeout after the body
    was sent, a 5xx, a 2xx without a usable image) is not tried again either, so no
    image is paid for twice; refusals (429, 503 draining, a failed connect) still are.

    The engine is tenacity's ``AsyncRetrying``: each decision above is one small strategy
    (`retry_if_safe`, `wait_backoff`, `stop_at_limit`, `stop_at_deadline`,
    `stop_without_budget`, `log_and_emit`), and one engine per policy is copied for each
    request.
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
        retry_maybe_billed: bool = True,
    ) -> None:
        self.max_retries = check_retries(max_retries, ConfigError, "Retry max_retries")
        seconds = "a number of seconds"
        self.backoff = check_non_negative(backoff, ConfigError, "Retry backoff", seconds)
        self.max_backoff = check_non_negative(
            max_backoff, ConfigError, "Retry max_backoff", seconds
        )
        self.max_retry_after = check_non_negative(
            max_retry_after, ConfigError, "Retry max_retry_after", seconds
        )
        if budget is not None and not isinstance(budget, RetryBudget):
            raise ConfigError(f"Retry budget must be a RetryBudget (got {budget!r})")
        if sleep is not None:
            check_callable(sleep, ConfigError, "Retry sleep")
        self.budget = budget if budget is not None else RetryBudget()
        self.retry_maybe_billed = bool(retry_maybe_billed)
        self.sleep: Sleep = sleep if sleep is not None else anyio.sleep
        self._engine = AsyncRetrying(
            sleep=self._sleep,
            retry=partial(retry_if_safe, self),
            wait=partial(wait_backoff, self),
            stop=partial(stop_before_retry, self),
            before_sleep=partial(log_and_emit, self),
            reraise=True,  # the caller sees the FluxError itself, never a RetryError
        )

    def __repr__(self) -> str:
        return f"Retry(max_retries={self.max_retries}, budget={self.budget!r})"

    def may_retry(self, kind: StepKind, error: FluxError) -> bool:
        """Whether a request of this kind that failed with ``error`` may be sent again."""
        if not error.retryable:
            return False
        if not self.retry_maybe_billed and error.billed == "maybe":
            return False
        if kind != "submit":
            return True
        if isinstance(error, ProviderError):
            return error.status_code in _SUBMIT_REFUSED
        return isinstance(error, TransportError) and not error.request_sent

    def delay(self, retry: int) -> float:
        """The backoff before the ``retry``-th retry (1 for the first), jitter included."""
        # The exponent is capped: 2.0 ** 1100 overflows, and the cap is reached far sooner.
        ceiling = min(self.max_backoff, self.backoff * 2.0 ** min(retry - 1, 64))
        return ceiling * _random()

    async def run(self, call: Call, kind: StepKind, attempt: Callable[[], Awaitable[_T]]) -> _T:
        """Run ``attempt`` until it succeeds or a failure must surface."""
        # A copy per request: tenacity keeps a run's state on the engine object.
        return await self._engine.copy()(_attempt, call, kind, attempt)

    async def _sleep(self, seconds: float) -> None:
        await self.sleep(seconds)  # looked up each time: tests may swap ``sleep``


# The strategies below are tenacity's ``retry=``, ``wait=``, ``stop=`` and
# ``before_sleep=``, each bound to its policy. A run's ``args`` are ``(call, kind,
# attempt)`` (see `Retry.run`), so each reads the call it decides for from the state.


async def _attempt(call: Call, kind: StepKind, attempt: Callable[[], Awaitable[_T]]) -> _T:
    return await attempt()


def _failure(state: RetryCallState) -> tuple[Call, StepKind, FluxError | None]:
    """The call, the request's kind, and the FluxError the last attempt raised (if any)."""
    call, kind = state.args[0], state.args[1]
    outcome = state.outcome
    error = outcome.exception() if outcome is not None and outcome.failed else None
    return call, kind, error if isinstance(error, FluxError) else None


def retry_if_safe(policy: Retry, state: RetryCallState) -> bool:
    """Whether the failure may be sent again at all (how soon is for ``stop``)."""
    call, kind, error = _failure(state)
    if error is None or not policy.may_retry(kind, error):
        return False  # not ours (a cancellation, a bug), or a failure that would repeat
    after = getattr(error, "retry_after", None)
    if after is None:
        return not (call.failover and call.job is None)  # another route takes it from here
    return bool(after <= policy.max_retry_after)  # a longer demand surfaces now


def wait_backoff(policy: Retry, state: RetryCallState) -> float:
    """The provider's Retry-After when it gave one, else capped backoff with full jitter."""
    _, _, error = _failure(state)
    after = getattr(error, "retry_after", None)
    return float(after) if after is not None else policy.delay(state.attempt_number)


def stop_at_limit(policy: Retry, state: RetryCallState) -> bool:
    """The call's ``max_retries`` are spent (the first attempt is not a retry)."""
    call: Call = state.args[0]
    return state.attempt_number > call.max_retries


def stop_at_deadline(policy: Retry, state: RetryCallState) -> bool:
    """The wait would reach the call's deadline: give up now rather than time out later."""
    deadline = anyio.current_effective_deadline()
    wait = state.upcoming_sleep
    return not math.isinf(deadline) and anyio.current_time() + wait >= deadline


def stop_without_budget(policy: Retry, state: RetryCallState) -> bool:
    """The client's retry budget has no token left (it takes one when there is)."""
    return not policy.budget.try_spend()


def stop_before_retry(policy: Retry, state: RetryCallState) -> bool:
    """All three stops, in this order: a budget token is spent only on a retry that starts."""
    return (
        stop_at_limit(policy, state)
        or stop_at_deadline(policy, state)
        or stop_without_budget(policy, state)
    )


def log_and_emit(policy: Retry, state: RetryCallState) -> None:
    """Say why and when the request goes again: a log line and a ``retry`` event."""
    call, kind, error = _failure(state)
    wait = state.upcoming_sleep
    retries = state.attempt_number
    reason = _reason(error) if error is not None else "an error"
    logger.info(
        "retrying %s in %.2f s after %s (retry %d of %d)",
        call.provider_name,
        wait,
        reason,
        retries,
        call.max_retries,
    )
    call.emit("retry", attempt=call.attempts, error=error, delay=wait, step=kind)


def _reason(exc: FluxError) -> str:
    status = getattr(exc, "status_code", None)
    return f"{type(exc).__name__} (HTTP {status})" if status else type(exc).__name__


def _random() -> float:
    return random.random()  # noqa: S311 - jitter, not security
