"""Every setting a user passes is checked when it is made: a bad one is a ConfigError.

FluxClient's own arguments and every knob of the public policy classes (Retry,
RetryBudget, RateLimit, ConcurrencyLimit) raise ConfigError, never a raw TypeError or
ValueError, and never later, mid-call. A call's own overrides raise InvalidRequestError.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from flux_sdk import (
    ConcurrencyLimit,
    ConfigError,
    Dataoorts,
    FluxClient,
    InvalidRequestError,
    RateLimit,
    Retry,
    RetryBudget,
)

NAN = math.nan
INF = math.inf


def provider() -> Dataoorts:
    return Dataoorts("sk-options-test-key", base_url="http://127.0.0.1:9")


def client(**settings: Any) -> Callable[[], object]:
    return lambda: FluxClient(provider(), **settings)


BAD: dict[str, Callable[[], object]] = {
    # FluxClient
    "timeout=0": client(timeout=0),
    "timeout=-1": client(timeout=-1),
    "timeout=nan": client(timeout=NAN),
    "timeout=inf": client(timeout=INF),
    "timeout='5'": client(timeout="5"),
    "timeout=True": client(timeout=True),
    "timeout=Timeout(nan)": client(timeout=httpx.Timeout(5.0, read=NAN)),
    "timeout=Timeout(connect=0)": client(timeout=httpx.Timeout(5.0, connect=0)),
    "deadline='5'": client(deadline="5"),
    "deadline=0": client(deadline=0),
    "deadline=nan": client(deadline=NAN),
    "max_retries=True": client(max_retries=True),
    "max_retries=-1": client(max_retries=-1),
    "max_retries=1.5": client(max_retries=1.5),
    "max_retries='3'": client(max_retries="3"),
    "max_response_bytes=True": client(max_response_bytes=True),
    "max_response_bytes=0": client(max_response_bytes=0),
    "max_response_bytes=1e6": client(max_response_bytes=1e6),
    "rate_limit=nan": client(rate_limit=NAN),
    "rate_limit=0": client(rate_limit=0),
    "rate_limit=-2": client(rate_limit=-2),
    "rate_limit=inf": client(rate_limit=INF),
    "rate_limit='5'": client(rate_limit="5"),
    "rate_limit=True": client(rate_limit=True),
    "max_concurrency=1.5": client(max_concurrency=1.5),
    "max_concurrency=0": client(max_concurrency=0),
    "max_concurrency=True": client(max_concurrency=True),
    "middleware=1": client(middleware=1),
    "middleware=[1]": client(middleware=[1]),
    "attempt_middleware='f'": client(attempt_middleware="f"),
    "on_event=1": client(on_event=1),
    "http_client=object()": client(http_client=object()),
    "provider=object()": lambda: FluxClient(object()),  # type: ignore[arg-type]
    # Retry
    "Retry(True)": lambda: Retry(True),
    "Retry(-1)": lambda: Retry(-1),
    "Retry(2.5)": lambda: Retry(2.5),  # type: ignore[arg-type]
    "Retry(backoff=-1)": lambda: Retry(backoff=-1),
    "Retry(backoff=nan)": lambda: Retry(backoff=NAN),
    "Retry(backoff='1')": lambda: Retry(backoff="1"),  # type: ignore[arg-type]
    "Retry(max_backoff=inf)": lambda: Retry(max_backoff=INF),
    "Retry(max_backoff=True)": lambda: Retry(max_backoff=True),
    "Retry(max_retry_after=nan)": lambda: Retry(max_retry_after=NAN),
    "Retry(max_retry_after=-5)": lambda: Retry(max_retry_after=-5),
    "Retry(budget=10)": lambda: Retry(budget=10),  # type: ignore[arg-type]
    "Retry(sleep=1)": lambda: Retry(sleep=1),  # type: ignore[arg-type]
    # RetryBudget
    "RetryBudget(ratio=-1)": lambda: RetryBudget(ratio=-1),
    "RetryBudget(ratio=nan)": lambda: RetryBudget(ratio=NAN),
    "RetryBudget(ratio=True)": lambda: RetryBudget(ratio=True),
    "RetryBudget(capacity=inf)": lambda: RetryBudget(capacity=INF),
    "RetryBudget(capacity='10')": lambda: RetryBudget(capacity="10"),  # type: ignore[arg-type]
    # RateLimit
    "RateLimit(0)": lambda: RateLimit(0),
    "RateLimit(-1)": lambda: RateLimit(-1),
    "RateLimit(nan)": lambda: RateLimit(NAN),
    "RateLimit(inf)": lambda: RateLimit(INF),
    "RateLimit('5')": lambda: RateLimit("5"),  # type: ignore[arg-type]
    "RateLimit(True)": lambda: RateLimit(True),
    "RateLimit(burst=0)": lambda: RateLimit(5, burst=0),
    "RateLimit(burst=1.5)": lambda: RateLimit(5, burst=1.5),  # type: ignore[arg-type]
    "RateLimit(burst=True)": lambda: RateLimit(5, burst=True),
    "RateLimit(min_rate=nan)": lambda: RateLimit(5, min_rate=NAN),
    "RateLimit(min_rate=0)": lambda: RateLimit(5, min_rate=0),
    "RateLimit(min_rate=-1)": lambda: RateLimit(5, min_rate=-1),
    "RateLimit(min_rate>rate)": lambda: RateLimit(5, min_rate=10),
    "RateLimit(clock=1)": lambda: RateLimit(5, clock=1),  # type: ignore[arg-type]
    "RateLimit(sleep='x')": lambda: RateLimit(5, sleep="x"),  # type: ignore[arg-type]
    # ConcurrencyLimit
    "ConcurrencyLimit(0)": lambda: ConcurrencyLimit(0),
    "ConcurrencyLimit(1.5)": lambda: ConcurrencyLimit(1.5),  # type: ignore[arg-type]
    "ConcurrencyLimit(True)": lambda: ConcurrencyLimit(True),
    "ConcurrencyLimit('4')": lambda: ConcurrencyLimit("4"),  # type: ignore[arg-type]
}


@pytest.mark.parametrize("setting", list(BAD))
def test_a_bad_setting_is_a_config_error_at_construction(setting: str) -> None:
    """Refused when made, with a message that names the setting and shows the value."""
    with pytest.raises(ConfigError) as caught:
        BAD[setting]()
    message = str(caught.value)
    assert " must " in message, message


GOOD: dict[str, Callable[[], object]] = {
    "timeout=Timeout(None)": client(timeout=httpx.Timeout(None)),
    "timeout=0.5": client(timeout=0.5),
    "deadline=None": client(deadline=None),
    "max_retries=0": client(max_retries=0),
    "rate_limit=0.5": client(rate_limit=0.5),
    "Retry(0, backoff=0)": lambda: Retry(0, backoff=0),
    "RetryBudget(ratio=0, capacity=0)": lambda: RetryBudget(ratio=0, capacity=0),
    "RateLimit(2, burst=3, min_rate=2)": lambda: RateLimit(2, burst=3, min_rate=2),
}


@pytest.mark.parametrize("setting", list(GOOD))
def test_edge_values_that_make_sense_are_accepted(setting: str) -> None:
    GOOD[setting]()


@pytest.mark.anyio
@pytest.mark.parametrize(
    "override",
    [
        {"max_retries": True},
        {"max_retries": -1},
        {"deadline": "5"},
        {"deadline": NAN},
        {"timeout": 0},
        {"timeout": "5"},
    ],
)
async def test_a_bad_override_of_one_call_is_an_invalid_request(
    override: dict[str, Any], anyio_backend: str
) -> None:
    """Nothing is sent: the port is closed, so a request would be a TransportError."""
    async with FluxClient(provider()) as flux:
        with pytest.raises(InvalidRequestError):
            await flux.generate("a red fox", **override)
