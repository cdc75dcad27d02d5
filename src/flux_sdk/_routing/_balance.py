"""How the router orders the routes for one call: ``"balanced"`` by what one more call
would cost at each (its calls per slot times how long a call holds a slot there),
``"failover"`` and ``"cheapest"`` by the list or by price, a full route after the
routes with a free slot."""

from __future__ import annotations

import random

from ._live import Live
from ._routes import Strategy

__all__ = ["order"]

_TIE = 1.2  # routes whose costs are within this factor of the least are as good
_FLOOR = 0.01  # seconds: shorter service times are the client's own noise, all alike


def order(candidates: list[Live], strategy: Strategy, rng: random.Random) -> list[Live]:
    """The routes to try, first choice first. In "failover" and "cheapest" order a full
    route comes after the routes with a free slot, so a busy first choice sends the
    overflow to the backup instead of making it wait."""
    if strategy == "balanced" and len(candidates) > 1:
        costs = _costs(candidates)
        healthy = [live for live in candidates if live.breaker.state == "closed"] or candidates
        first = _cheapest(healthy, costs, rng)
        rest = [live for live in candidates if live is not first]
        return [first, *sorted(rest, key=lambda live: costs[id(live)])]
    if strategy == "cheapest":
        candidates = sorted(candidates, key=_price)
    return sorted(candidates, key=lambda live: not live.has_room)  # stable: order kept


def _cheapest(
    healthy: list[Live], costs: dict[int, tuple[bool, float]], rng: random.Random
) -> Live:
    """The route where a call would finish soonest; routes within `_TIE` of it are as
    good, and one of those is drawn by weight times the calls it serves a second (slots
    per service time): drawn evenly, a small host among the ties would get more than
    its share, and the batch would end waiting for it."""
    full, best = min(costs[id(live)] for live in healthy)
    ties = [
        live for live in healthy if costs[id(live)][0] == full and costs[id(live)][1] <= best * _TIE
    ]
    if len(ties) == 1:
        return ties[0]
    seconds = _service_times(ties)
    weights = [live.route.weight * live.concurrency.limit / seconds[id(live)] for live in ties]
    return rng.choices(ties, weights=weights)[0]


def _costs(lives: list[Live]) -> dict[int, tuple[bool, float]]:
    """Each route's cost for one more call, least first: a route with a free slot before
    a full one, then the calls there (every process's, with a `SharedLimit`) per slot
    times how long a call holds a slot there (a host not yet timed: the others' mean)."""
    seconds = _service_times(lives)
    costs = {}
    for live in lives:
        per_slot = (live.busy + 1) / live.concurrency.limit
        costs[id(live)] = (not live.has_room, per_slot * seconds[id(live)])
    return costs


def _service_times(lives: list[Live]) -> dict[int, float]:
    """How long a call holds a slot at each route (one not yet timed: the others' mean)."""
    known = [seconds for live in lives if (seconds := live.service) is not None]
    default = sum(known) / len(known) if known else 1.0
    return {
        id(live): max(_FLOOR, default if (service := live.service) is None else service)
        for live in lives
    }


def _price(live: Live) -> tuple[bool, float]:
    return (live.route.price is None, live.route.price or 0.0)
