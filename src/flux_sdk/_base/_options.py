"""Checks of the settings users pass, in one place, each naming the setting and the fix.

The client and the public policy classes (`Retry`, `RetryBudget`, `RateLimit`,
`ConcurrencyLimit`) raise `ConfigError` for their settings, and a call's overrides
raise `InvalidRequestError`; the checks are the same, so they live here once.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import httpx

Error = Callable[[str], Exception]

__all__ = [
    "check_callable",
    "check_non_negative",
    "check_positive_int",
    "check_retries",
    "check_seconds",
    "check_timeout",
]


def check_retries(value: object, error: Error, name: str = "max_retries") -> int:
    """A non-negative ``int`` (not a bool), or ``error`` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise error(f"{name} must be a whole number >= 0 (got {value!r})")
    return value


def check_positive_int(value: object, error: Error, name: str) -> int:
    """A positive ``int`` (not a bool), or ``error`` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise error(f"{name} must be a whole number >= 1 (got {value!r})")
    return value


def check_seconds(value: object, error: Error, name: str) -> float:
    """A finite number of seconds above 0, or ``error`` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise error(f"{name} must be a number of seconds (got {value!r})")
    if not 0 < value < math.inf:
        raise error(f"{name} must be a finite number of seconds above 0 (got {value!r})")
    return float(value)


def check_timeout(value: object, error: Error, name: str = "timeout") -> httpx.Timeout:
    """An ``httpx.Timeout`` from a number of seconds or a Timeout whose parts are
    each None (no limit) or a finite number above 0."""
    if isinstance(value, httpx.Timeout):
        for part, seconds in value.as_dict().items():
            if seconds is not None:
                check_seconds(seconds, error, f"{name}'s {part}")
        return value
    return httpx.Timeout(check_seconds(value, error, name))


def check_non_negative(value: object, error: Error, name: str, what: str = "a number") -> float:
    """A finite number >= 0 (not a bool), or ``error`` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise error(f"{name} must be {what} (got {value!r})")
    if not 0 <= value < math.inf:
        raise error(f"{name} must be {what}, finite and >= 0 (got {value!r})")
    return float(value)


def check_callable(value: object, error: Error, name: str) -> None:
    """``value`` is callable, or ``error`` naming ``name``."""
    if not callable(value):
        raise error(f"{name} must be callable (got {value!r})")
