"""A route as the router runs it (`Live`), and building each one from a `Route`: its own
limits, breaker, step runner and sender."""

from __future__ import annotations

import functools
import math
import time
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
from flux_sdk._policy._shared_load import SharedLoad
from flux_sdk._transport._http import Http
from flux_sdk.providers._base import FlowProvider, Provider

from ._hedge import Sample
from ._routes import Route
from ._state import RouteState
from ._steps import StepRunner

__all__ = ["Live", "build_routes"]

_LATENCIES = 200  # recent successful call times kept per route
_SHARE = 0.02  # how fast a route's share of first tries follows the calls (about 50 calls)
_TAIL = 0.9  # a call given up on counts as this quantile of the answers that took longer
_UNSEEN = 4.0  # a call given up on, no slower answer seen: the rest takes this times as long
_SLOW = 2.0  # an answer this many times the estimate is a slow one, kept apart (`slow`)
_DECAY = 2.0  # seconds: how fast a route's service time forgets a slow call (peak-EWMA)
_now = time.perf_counter  # the clock of the estimates (a test's own, in tests)


class Live:
    """A route as the router runs it: its runner, limits, breaker and recent history."""

    def __init__(
        self,
        route: Route,
        runner: StepRunner,
        concurrency: ConcurrencyLimit | SharedLimit,
        breaker: CircuitBreaker,
        flow_provider: bool,
        admitted: dict[int, float] | None = None,
    ) -> None:
        self.route = route
        self.provider = route.provider
        self.runner = runner
        self.concurrency = concurrency
        self.breaker = breaker
        self.flow_provider = flow_provider
        self.latencies: deque[float] = deque(maxlen=_LATENCIES)
        # What a hedge's delay is worked out from: the same times, and also the calls
        # given up on when a hedge won (they would have taken longer).
        self.samples: deque[Sample] = deque(maxlen=_LATENCIES)
        # The slow answers, kept apart so the fast ones do not push them out: once hedges
        # rescue a host's tail, none of its slow calls is seen to the end any more, and
        # a call given up on is timed by the last ones that were (`gave_up`).
        self.slow: deque[float] = deque(maxlen=_LATENCIES // 10)
        self.share = 1.0  # of recent calls, how many were tried here first (a moving mean)
        self.calls = 0
        self.failures = 0
        self.pending = 0  # this process's calls at this route, running or waiting
        # With a SharedLimit, the other processes' calls at the host too (from Redis).
        self.shared = SharedLoad(concurrency) if isinstance(concurrency, SharedLimit) else None
        # When each running call first got its slot here (by id), to time its service.
        self.admitted: dict[int, float] = {} if admitted is None else admitted
        # When each running queue job ended on its host, its slot given back (by id).
        self.freed: dict[int, float] = {}
        runner.on_ended = self._freed
        self._service: float | None = None  # peak-EWMA of the seconds a call holds a slot
        self._stamp = _now()

    def _freed(self, call: Call) -> None:
        self.freed.setdefault(id(call), _now())

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
    def busy(self) -> int:
        """Calls at this host, running or waiting for a slot: this process's, and with a
        `SharedLimit` every other process's as last read from Redis."""
        if self.shared is not None:
            return self.pending + self.shared.others
        return max(self.pending, self.concurrency.in_flight)

    @property
    def load(self) -> float:
        return self.busy / self.concurrency.limit

    @property
    def has_room(self) -> bool:
        """Whether a call sent here now would find a free slot."""
        return self.busy < self.concurrency.limit

    def answered(self, seconds: float) -> None:
        """A call here ended well after ``seconds``."""
        self.latencies.append(seconds)
        self.samples.append((seconds, True))
        if self._service is not None and seconds > _SLOW * self._service:
            self.slow.append(seconds)

    def gave_up(self, seconds: float, admitted: float | None) -> None:
        """A call here was given up on after ``seconds`` because a hedge elsewhere won:
        it would have taken longer, so it counts for the hedge's delay and (from
        ``admitted``, when it had a slot) in the service estimate as the 90th percentile
        of the answers here that took longer (the recent ones, else the slow ones kept
        apart), or, with none seen, as five times what it ran (a stall: a host hedged
        from its first calls never has its tail seen to the end, and counted as twice,
        it was back in favour within a second and took three times its unhedged share).
        It decays only from when that answer would have come. A hedge wins the tail,
        so the answers just past ``seconds`` that beat one make the mean too short, and
        a decay from the give-up would bring the host back sooner than its answer seen
        to the end: either way a tail rescued by hedges looked short, and balancing sent
        the host more calls hedged than unhedged."""
        self.samples.append((seconds, False))
        if admitted is None:
            return
        longer = sorted(s for s in self.latencies if s > seconds) or sorted(
            s for s in self.slow if s > seconds
        )
        rest = longer[math.ceil(_TAIL * len(longer)) - 1] - seconds if longer else _UNSEEN * seconds
        now = _now()
        self.observe(now - admitted + rest, at=now + rest)

    def tried_first(self, first: bool) -> None:
        """A call was tried here first, or (``first=False``) elsewhere."""
        self.share += _SHARE * (first - self.share)

    def served(self, admitted: float, freed: float | None = None) -> None:
        """A call that got its slot here at ``admitted`` (on the estimates' clock) ended
        well: its service time counts in the estimate, up to when its slot was
        ``freed`` (a queue job: when the host said it ended) or now."""
        self.observe((_now() if freed is None else freed) - admitted)

    def observe(self, seconds: float, at: float | None = None) -> None:
        """A call held a slot here ``seconds``: a slower one than the estimate counts at
        once, a faster one in a time-weighted average (peak-EWMA). ``at``: when it would
        have ended (a call given up on), from which the estimate starts to decay."""
        now = _now()
        if self._service is None or seconds >= self._service:
            self._service = seconds
            self._stamp = now if at is None else at
        else:
            weight = math.exp(-max(0.0, now - self._stamp) / _DECAY)
            self._service = self._service * weight + seconds * (1.0 - weight)
            self._stamp = max(now, self._stamp)

    @property
    def service(self) -> float | None:
        """The seconds a call holds a slot here, decaying while none is seen and none of
        this process's calls is here (so a host left alone after a slow answer is tried
        again), or None before any. A host with calls of ours still at it is not left
        alone: no answer yet is no sign of speed, and a small host (a few slots, shared
        by many processes) answers each process seldom, so decaying then would make it
        look free and pile calls on it."""
        if self._service is None:
            return None
        if self.pending:
            return self._service
        return self._service * math.exp(-max(0.0, _now() - self._stamp) / _DECAY)


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
        admitted: dict[int, float] = {}
        layers += [limit, _Admit(admitted), _Gate(route_breaker), *attempt_middleware]
        runner = StepRunner(
            retry=retry,
            attempt_chain=functools.partial(chain, tuple(layers)),
            http=http,
            flow_provider=flow,
        )
        lives.append(Live(route, runner, limit, route_breaker, flow, admitted))
    return lives


def _limit(value: int | ConcurrencyLimit | SharedLimit | None) -> ConcurrencyLimit | SharedLimit:
    if value is None:
        return AdaptiveLimit()  # each route learns its own host
    if isinstance(value, (ConcurrencyLimit, SharedLimit)):
        value.limit  # noqa: B018 -- a SharedLimit without concurrency= says so
        return value
    return ConcurrencyLimit(check_positive_int(value, ConfigError, "max_concurrency"))


class _Admit:
    """Notes when each call last took the route's slot (its request that makes the
    image, or submits the job), so the time it then takes is the host's (its service):
    not the wait for the slot, nor a retry's backoff, which holds none."""

    def __init__(self, admitted: dict[int, float]) -> None:
        self.admitted = admitted

    async def __call__(self, call: Call, call_next: AttemptNext) -> httpx.Response:
        step = call.step
        if step is None or step.kind in ("generate", "submit"):
            self.admitted[id(call)] = _now()
        else:  # a job's poll or download: its slot was taken by the submit
            self.admitted.setdefault(id(call), _now())
        return await call_next(call)


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
