"""Routes seen and set: client.routes for a dashboard, bad routing settings refused at once."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import respx

from flux_sdk import ConfigError, FluxClient, Route

from ._routing import OK, A, B, Host, client

pytestmark = pytest.mark.anyio


async def test_route_states_show_what_a_dashboard_needs(router: respx.MockRouter) -> None:
    """client.routes: circuit, in flight, latency, error rate, counts per host."""
    router.post(A.url).mock(side_effect=[httpx.Response(503), OK, OK])
    router.post(B.url).mock(return_value=OK)
    async with client([A, Route(B, max_concurrency=4)]) as flux:
        for _ in range(3):
            await flux.generate("a cat")
        alpha, beta = flux.routes
    assert (alpha.provider, alpha.calls, alpha.failures, alpha.circuit) == ("alpha", 3, 1, "closed")
    assert alpha.latency_p50 is not None
    assert alpha.error_rate == pytest.approx(1 / 3)
    assert (beta.calls, beta.max_concurrency, beta.in_flight) == (1, 4, 0)
    assert repr(flux) == "FluxClient([alpha, beta], routing='failover')"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"routing": "fastest"}, "routing must be"),
        ({"hedge": 0.5}, "hedge must be a Hedge"),
        ({"breaker": "on"}, "breaker must be a CircuitBreaker"),
    ],
)
async def test_bad_routing_settings_are_config_errors(kwargs: dict[str, Any], match: str) -> None:
    """Routing settings are checked when the client is made."""
    with pytest.raises(ConfigError, match=match):
        FluxClient([A, B], **kwargs)


async def test_bad_routes_are_config_errors() -> None:
    """An empty list, two routes of one name, a bad weight or price: refused at once."""
    with pytest.raises(ConfigError, match="at least one"):
        FluxClient([])
    with pytest.raises(ConfigError, match="both named 'alpha'"):
        FluxClient([A, Host("alpha")])
    with pytest.raises(ConfigError, match="weight"):
        Route(A, weight=0)
    with pytest.raises(ConfigError, match="price"):
        Route(A, price=-1)
