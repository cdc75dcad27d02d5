"""What happened during a call, for users who count rather than read logs."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from ._errors import FluxError

__all__ = ["EventHook", "FluxEvent"]

logger = logging.getLogger("flux_sdk")


@dataclass(frozen=True, slots=True)
class FluxEvent:
    """One thing that happened in a `FluxClient.generate` call.

    ``kind`` is ``"attempt"`` after each HTTP request (``status_code`` or ``error`` say
    how it went), ``"retry"`` before a backoff sleep (``delay`` seconds), ``"wait"``
    before a flow's poll interval (``delay`` seconds), ``"failover"`` when a routed call
    leaves a host (``error`` says why) and ``"hedge"`` when it sends a second attempt to
    another host, ``"success"`` or ``"failure"`` once per call. ``attempt`` is the
    call's attempt counter: the number of HTTP requests sent so far. ``step`` says what
    the request did (``"generate"``, ``"submit"``, ``"poll"``, ``"download"``,
    ``"cancel"``). ``elapsed`` is the attempt's time for ``"attempt"``, the whole call's
    time otherwise. ``concurrency`` is, on an ``"attempt"``, the concurrency limit the
    request went through (an `AdaptiveLimit`'s value at that moment).
    """

    kind: Literal["attempt", "retry", "wait", "failover", "hedge", "success", "failure"]
    provider: str
    attempt: int
    elapsed: float = 0.0
    step: str | None = None
    status_code: int | None = None
    error: FluxError | None = None
    delay: float | None = None
    concurrency: int | None = None


EventHook = Callable[[FluxEvent], None]
"""A callable that receives every `FluxEvent`; keep it quick, it runs inline."""
