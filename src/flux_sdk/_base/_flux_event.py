"""`FluxEvent`: one thing that happened during a call, for users who count rather than
read logs.

Its own module, loaded with a client's first event (``on_event``): a client without a
hook never builds one, and a first generate need not pay for compiling this dataclass
at import (issue 26).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from ._errors import Billed, FluxError
    from ._models import GenerateRequest

__all__ = ["FluxEvent"]


@dataclass(frozen=True, slots=True)
class FluxEvent:
    """One thing that happened in a `FluxClient.generate` call.

    ``kind`` is ``"attempt"`` after each HTTP request (``status_code`` or ``error`` say
    how it went), ``"retry"`` before a backoff sleep (``delay`` seconds), ``"wait"``
    before a flow's poll interval (``delay`` seconds), ``"failover"`` when a routed call
    leaves a host (``error`` says why), ``"skip"`` for a route that cannot honour the
    request as asked (``error`` says why; it is not tried), ``"hedge"`` when it sends a
    second attempt to another host, ``"success"`` or ``"failure"`` once per call. ``attempt`` is the
    call's attempt counter: the number of HTTP requests sent so far. ``step`` says what
    the request did (``"generate"``, ``"submit"``, ``"poll"``, ``"download"``,
    ``"cancel"``). ``elapsed`` is the attempt's time for ``"attempt"``, the whole call's
    time otherwise. ``request`` is what the call asks for.

    ``billed`` and ``cost`` say what the host may have charged: for an ``"attempt"``,
    that request (``"no"`` and 0 for polls, downloads and cancels, whose job is charged
    at its submit; ``"maybe"`` for a submit whose job is still running); for
    ``"success"`` and ``"failure"``, the whole call. ``cost`` is in USD, counting
    maybe-billed attempts, and None when the host has no known price.
    ``concurrency`` is, on an ``"attempt"``, the concurrency limit the request went
    through (an `AdaptiveLimit`'s value at that moment).
    """

    kind: Literal["attempt", "retry", "wait", "failover", "hedge", "skip", "success", "failure"]
    provider: str
    attempt: int
    elapsed: float = 0.0
    step: str | None = None
    status_code: int | None = None
    error: FluxError | None = None
    delay: float | None = None
    request: GenerateRequest | None = None
    billed: Billed | None = None
    cost: float | None = None
    concurrency: int | None = None
