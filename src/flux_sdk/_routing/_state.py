"""`RouteState`: one route as `FluxClient.routes` reports it.

Its own module, loaded when a client reports its routes: building this dataclass costs
about a millisecond at import, which a client's first generate need not pay.
"""

from __future__ import annotations

from dataclasses import dataclass

from flux_sdk._policy._breaker import State

__all__ = ["RouteState"]


@dataclass(frozen=True, slots=True)
class RouteState:
    """One route as a dashboard sees it (`FluxClient.routes`)."""

    provider: str
    circuit: State
    in_flight: int
    max_concurrency: int
    latency_p50: float | None
    latency_p95: float | None
    error_rate: float
    calls: int
    failures: int
