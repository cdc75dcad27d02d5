"""What happened during a call, for users who count rather than read logs."""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import httpx

    from ._errors import FluxError
    from ._models import GenerateRequest

__all__ = ["EventHook", "FluxEvent"]

logger = logging.getLogger("flux_sdk")


@dataclass(frozen=True, slots=True)
class FluxEvent:
    """One thing that happened in a `FluxClient.generate` call.

    ``kind`` is ``"attempt"`` after each attempt at the provider (``status_code`` or
    ``error`` say how it went), ``"retry"`` before a backoff sleep (``delay`` seconds),
    ``"success"`` or ``"failure"`` once per call. ``elapsed`` is the attempt's time for
    ``"attempt"``, the whole call's time otherwise.
    """

    kind: Literal["attempt", "retry", "success", "failure"]
    provider: str
    attempt: int
    elapsed: float = 0.0
    status_code: int | None = None
    error: FluxError | None = None
    delay: float | None = None


EventHook = Callable[[FluxEvent], None]
"""A callable that receives every `FluxEvent`; keep it quick, it runs inline."""


@dataclass(slots=True)
class Call:
    """The state of one `generate` call, shared by its middleware through a ContextVar."""

    provider: str
    on_event: EventHook | None = None
    max_retries: int | None = None
    deadline: float | None = None
    timeout: dict[str, float | None] | None = None
    # The HTTP request built (and so validated) before the chain ran, reused by the
    # innermost call unless a middleware swapped the GenerateRequest.
    prebuilt: tuple[GenerateRequest, httpx.Request] | None = None
    attempts: int = 0
    errors: list[FluxError] = field(default_factory=list)

    def emit(self, event: FluxEvent) -> None:
        if self.on_event is not None:
            self.on_event(event)


current_call: ContextVar[Call | None] = ContextVar("flux_sdk_call", default=None)
