"""`Route`: one provider in a multi-provider client, with its own limits and health."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import httpx

from flux_sdk._base._errors import ConfigError
from flux_sdk._policy._limits import ConcurrencyLimit, RateLimit
from flux_sdk._policy._shared import SharedLimit
from flux_sdk._transport._http import Http
from flux_sdk.providers._base import FlowProvider, Provider

from ._hedge import Hedge

__all__ = ["Hedge", "Route", "Strategy", "as_routes", "route_https"]

# How a client of several providers picks a route (see `Router`).
Strategy = Literal["failover", "balanced", "cheapest"]


class Route:
    """A provider in ``FluxClient([...])``, with settings of its own.

    ``weight`` shares the load in ``routing="balanced"``; ``max_concurrency`` and
    ``rate_limit`` bound this host alone (a number, a shared `ConcurrencyLimit` /
    `RateLimit`, or a `SharedLimit` across processes; by default the client's
    ``max_concurrency`` number, per route, or an `AdaptiveLimit` of the route's own
    when the client has no number);
    ``price`` (USD per image) orders ``routing="cheapest"``.
    """

    def __init__(
        self,
        provider: Provider | FlowProvider,
        *,
        weight: float = 1.0,
        max_concurrency: int | ConcurrencyLimit | SharedLimit | None = None,
        rate_limit: float | RateLimit | SharedLimit | None = None,
        price: float | None = None,
    ) -> None:
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not weight > 0:
            raise ConfigError(f"a route's weight must be a number above 0 (got {weight!r})")
        if not math.isfinite(weight):
            raise ConfigError(f"a route's weight must be finite (got {weight!r})")
        if price is not None and (
            isinstance(price, bool) or not isinstance(price, (int, float)) or not price >= 0
        ):
            raise ConfigError(f"a route's price must be a number of USD >= 0 (got {price!r})")
        self.provider = provider
        self.weight = float(weight)
        self.max_concurrency = max_concurrency
        self.rate_limit = rate_limit
        self.price = None if price is None else float(price)

    def __repr__(self) -> str:
        return f"Route({self.provider!r}, weight={self.weight:g}, price={self.price!r})"


def as_routes(
    provider: Provider | FlowProvider | Sequence[Provider | FlowProvider | Route],
) -> list[Route] | None:
    """The routes of a client made with a list of providers, or None for one provider."""
    if not isinstance(provider, (list, tuple)):
        return None
    if not provider:
        raise ConfigError("FluxClient([...]) needs at least one provider")
    return [entry if isinstance(entry, Route) else Route(entry) for entry in provider]


def route_https(
    routes: Sequence[Route],
    *,
    timeout: httpx.Timeout,
    max_response_bytes: int,
    http_client: httpx.AsyncClient | None,
) -> list[Http]:
    """One sender per route, so each route's requests (and its key) reach only its own
    host: a provider's own ``transport`` (the in-process emulator) for its route alone,
    even with ``http_client`` (which serves the routes without one), else connections of
    the route's own. Routes that cannot be told apart are a `ConfigError` naming both."""
    seen_names: dict[str, Route] = {}
    seen_transports: dict[int, Route] = {}
    https = []
    for route in routes:
        provider = route.provider
        name = getattr(provider, "name", None)
        if not isinstance(name, str):
            raise ConfigError(f"{provider!r} in the route list is not a provider: it has no name")
        other = seen_names.setdefault(name, route)
        if other is not route:
            raise ConfigError(
                f"two routes are both named {name!r} ({other.provider!r} and {provider!r}): "
                "their circuits, limits and ledger lines could not be told apart; give one "
                "another name (provider.name = ...)"
            )
        transport = getattr(provider, "transport", None)
        if transport is not None and not isinstance(transport, httpx.AsyncBaseTransport):
            raise ConfigError(
                f"{name}'s transport must be an httpx.AsyncBaseTransport "
                f"(got {type(transport).__name__})"
            )
        if transport is not None:
            other = seen_transports.setdefault(id(transport), route)
            if other is not route:
                raise ConfigError(
                    f"{name} carries the transport of {other.provider.name} "
                    f"({other.provider!r} and {provider!r}): one route's requests, and its "
                    "key, would reach the other's host; give each provider its own transport"
                )
        https.append(
            Http(
                timeout=timeout,
                max_response_bytes=max_response_bytes,
                http_client=http_client if transport is None else None,
                transport=transport,
            )
        )
    return https
