"""A route as the router runs it (`Live`), and building each one from a `Route`: its own
limits, breaker, step runner and sender."""

from __future__ import annotations

import functools
from collections import deque
from collections.abc import Sequence

import httpx

from flux_sdk._base._errors import ConfigError
from flux_sdk._base._options import check_positive_int
from flux_sdk._pipeline._call import Call
from flux_sdk._pipeline._middleware import AttemptMiddleware, AttemptNext, chain
from flux_sdk._policy._adaptive import AdaptiveLimit
from flux_sdk._policy._breaker import CircuitBreaker, CircuitOpen
from flux_sdk._policy._limits import ConcurrencyLimit, RateLimit
from flux_sdk._policy._retry import Retry
from flux_sdk._policy._shared import SharedLimit
from flux_sdk._transport._http import Http
from flux_sdk.providers._base import FlowProvider, Provider

from ._routes import Route, RouteState
from ._steps import StepRunner

__all__ = ["Live", "build_routes"]

_LATENCIES = 200  # recent successful call times kept per route


class Live:
    """A route as the router runs it: its runner, limits, breaker and recent history."""

    def __init__(
        self,
        route: Route,
        runner: StepRunner,
        concurrency: ConcurrencyLimit | SharedLimit,
        breaker: CircuitBreaker,
        flow_provider: bool,
    ) -> None:
        self.route = route
        self.provider = route.provider
        self.runner = runner
        self.concurrency = concurrency
        self.breaker = breaker
        self.flow_provider = flow_provider
        self.latencies: deque[float] = deque(maxlen=_LATENCIES)
        self.calls = 0
        self.failures = 0

    def state(self) -> RouteState:
        ordered = sorted(self.latencies)
        return RouteState(
            provider=self.provider.name,
            circuit=self.breaker.state,
            in_flight=self.concurrency.in_flight,
            max_concurrency=self.concurrency.limit,
            latency_p50=ordered[len(ordered) // 2] if ordered else None,
            latency_p95=ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
            if ordered
            else None,
            error_rate=self.breaker.error_rate,
            calls=self.calls,
            failures=self.failures,
        )

    @property
    def load(self) -> float:
        return self.concurrency.in_flight / self.concurrency.limit

    @property
    def has_room(self) -> bool:
        """Whether a call sent here now would find a free slot."""
        return self.concurrency.in_flight < self.concurrency.limit


def build_routes(
    routes: Sequence[Route],
    *,
    retry: Retry,
    https: Sequence[Http],
    attempt_middleware: Sequence[AttemptMiddleware],
    concurrency: int | ConcurrencyLimit | SharedLimit | None,
    rate_limit: float | RateLimit | SharedLimit | None,
    breaker: CircuitBreaker,
) -> list[Live]:
    """Each route's runtime: its own limits (the client's numbers unless the route has
    its own; a shared limit object stays shared; without a number, an `AdaptiveLimit`
    of its own), breaker and step runner."""
    lives = []
    for route, http in zip(routes, https, strict=True):
        provider = route.provider
        flow = isinstance(provider, FlowProvider) and not isinstance(provider, Provider)
        if not flow and not isinstance(provider, Provider):
            raise ConfigError(f"{provider!r} in the route list is not a provider")
        limit = _limit(route.max_concurrency if route.max_concurrency is not None else concurrency)
        rate = route.rate_limit if route.rate_limit is not None else rate_limit
        layers: list[AttemptMiddleware] = []
        if rate is not None and rate is not limit:  # a SharedLimit given as both runs once
            layers.append(rate if isinstance(rate, (RateLimit, SharedLimit)) else RateLimit(rate))
        route_breaker = breaker.copy()
        layers += [limit, _Gate(route_breaker), *attempt_middleware]
        runner = StepRunner(
            retry=retry,
            attempt_chain=functools.partial(chain, tuple(layers)),
            http=http,
            flow_provider=flow,
        )
        lives.append(Live(route, runner, limit, route_breaker, flow))
    return lives


def _limit(value: int | ConcurrencyLimit | SharedLimit | None) -> ConcurrencyLimit | SharedLimit:
    if value is None:
        return AdaptiveLimit()  # each route learns its own host
    if isinstance(value, (ConcurrencyLimit, SharedLimit)):
        value.limit  # noqa: B018 -- a SharedLimit without concurrency= says so
        return value
    return ConcurrencyLimit(check_positive_int(value, ConfigError, "max_concurrency"))


class _Gate:
    """Per attempt, once the route's slot is held: a call that waited while the circuit
    opened goes to another route instead of adding to the failures (only when another
    route could take it)."""

    def __init__(self, breaker: CircuitBreaker) -> None:
        self.breaker = breaker

    async def __call__(self, call: Call, call_next: AttemptNext) -> httpx.Response:
        if call.failover and call.job is None and self.breaker.state == "open":
            raise CircuitOpen(
                f"{call.provider_name}: its circuit opened while this call waited",
                provider=call.provider_name,
            )
        admit, call.admit = call.admit, None
        if admit is not None and not admit():  # a hedge is paid for only when it is sent
            raise CircuitOpen(
                f"{call.provider_name}: no hedge token was left when a slot came free",
                provider=call.provider_name,
            )
        return await call_next(call)
