"""`CircuitBreaker`: stop sending to a host that is failing, and try it again later.

    closed ──(failures)──> open ──(cooldown passes)──> half-open ──(probe succeeds)──> closed
                            ^                              │
                            └──────(probe fails)───────────┘

Closed lets every call through and counts outcomes. It opens after ``failures``
consecutive failures, or when at least ``min_calls`` of the last ``window`` calls ended
and ``failure_rate`` of them failed. Open refuses calls until ``cooldown`` seconds have
passed; then half-open lets exactly one probe through at a time: its success closes the
circuit, its failure opens it again. A wrong key (401/403) opens it for
``auth_cooldown``, and a spent quota (`QuotaExceeded`) for ``quota_cooldown``, both far
longer: retrying a key that is wrong, or an account with no credit, cannot help.
"""

from __future__ import annotations

import copy
import math
from collections import deque
from collections.abc import Callable
from typing import Literal

import anyio

from flux_sdk._base._errors import (
    AuthenticationError,
    FluxError,
    ProviderError,
    QuotaExceeded,
    warn,
)
from flux_sdk._base._options import check_positive_int, check_seconds

__all__ = ["CircuitBreaker", "CircuitOpen"]

State = Literal["closed", "open", "half-open"]


class CircuitBreaker:
    """The health of one route, with an injectable ``clock`` for tests."""

    def __init__(
        self,
        *,
        failures: int = 5,
        failure_rate: float = 0.5,
        window: int = 20,
        min_calls: int = 10,
        cooldown: float = 30.0,
        auth_cooldown: float = 600.0,
        quota_cooldown: float = 3600.0,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.failures = check_positive_int(failures, ValueError, "failures")
        if isinstance(failure_rate, bool) or not 0 < failure_rate <= 1:
            raise ValueError(f"failure_rate must be above 0 and at most 1 (got {failure_rate!r})")
        self.failure_rate = float(failure_rate)
        self.window = check_positive_int(window, ValueError, "window")
        self.min_calls = check_positive_int(min_calls, ValueError, "min_calls")
        self.cooldown = check_seconds(cooldown, ValueError, "cooldown")
        self.auth_cooldown = check_seconds(auth_cooldown, ValueError, "auth_cooldown")
        self.quota_cooldown = check_seconds(quota_cooldown, ValueError, "quota_cooldown")
        self._clock = clock if clock is not None else anyio.current_time
        self._start()

    def _start(self) -> None:
        """The state of a breaker that has seen no call yet."""
        self._recent: deque[bool] = deque(maxlen=self.window)  # True: failed
        self._consecutive = 0
        self._open_until = -math.inf
        self._opened = False
        self._probing = False
        self._warned: set[str] = set()  # the kinds of long opening warned about

    def copy(self) -> CircuitBreaker:
        """A fresh breaker with the same settings (one per route)."""
        fresh = copy.copy(self)  # the settings and the clock, checked once already
        fresh._start()
        return fresh

    @property
    def state(self) -> State:
        if not self._opened:
            return "closed"
        return "open" if self._clock() < self._open_until else "half-open"

    @property
    def error_rate(self) -> float:
        """The share of the recent calls (up to ``window``) that failed."""
        return sum(self._recent) / len(self._recent) if self._recent else 0.0

    @property
    def open_for(self) -> float:
        """Seconds until an open circuit lets a probe through (0 when not open)."""
        return max(0.0, self._open_until - self._clock()) if self._opened else 0.0

    def try_acquire(self) -> bool:
        """Whether a call may go to this route now; in half-open, only one probe at a time."""
        state = self.state
        if state == "closed":
            return True
        if state == "open" or self._probing:
            return False
        self._probing = True
        return True

    def on_success(self) -> None:
        self._probing = False
        self._recent.append(False)
        self._consecutive = 0
        self._opened = False

    def on_failure(self, error: FluxError, provider: str) -> None:
        """Count a failure that is the host's fault (the router decides which are)."""
        self._probing = False
        self._recent.append(True)
        self._consecutive += 1
        if isinstance(error, AuthenticationError):
            what = f"{provider} refused the API key"
            self._open_long(self.auth_cooldown, "auth", what, error, "check that provider's key")
            return
        if isinstance(error, QuotaExceeded):
            what = f"{provider}'s quota or credit is spent"
            self._open_long(self.quota_cooldown, "quota", what, error, "add credit at that host")
            return
        if self._opened:  # a failed probe: open again
            self._open(self.cooldown)
            return
        rate_tripped = len(self._recent) >= self.min_calls and self.error_rate >= self.failure_rate
        if self._consecutive >= self.failures or rate_tripped:
            self._open(self.cooldown)

    def release(self) -> None:
        """A call that ended without a verdict (cancelled) gives its probe back."""
        self._probing = False

    def _open(self, seconds: float) -> None:
        self._opened = True
        self._open_until = self._clock() + seconds

    def _open_long(
        self, cooldown: float, kind: str, what: str, error: ProviderError, next_step: str
    ) -> None:
        """Open for an error that will not pass by itself, warning once per ``kind``."""
        self._open(cooldown)
        if kind not in self._warned:
            self._warned.add(kind)
            warn(
                f"{what} (HTTP {error.status_code}); the router sends nothing there for "
                f"{cooldown:g} s and uses the other routes: {next_step}"
            )

    def __repr__(self) -> str:
        return f"CircuitBreaker(state={self.state!r}, error_rate={self.error_rate:.2f})"


class CircuitOpen(FluxError):
    """A route's circuit opened while a call waited for one of its slots: nothing was
    sent, and the router takes the call to another route."""

    retryable = True
