"""Routing one call over several providers: order, failover, circuit breakers, hedging.

The router is the innermost per-call layer of a client made with a list of providers
(in place of the single-provider step runner). For each call it lists the routes whose
rules accept the request, orders them by the strategy, and tries them in turn. Each
route runs the call with its own limits; inside a route a failure is retried only when
the host asked for it (``Retry-After``), otherwise the call moves to the next route.
Moving on spends a token of the client's retry budget, and the caller's deadline holds
across routes (it is outside). An accepted queue job is never sent to another host, nor
a submit the host may have taken.
"""

from __future__ import annotations

import dataclasses
import functools
import random
import time
from collections import deque
from collections.abc import Sequence
from typing import cast

import anyio
import httpx

from ._adaptive import AdaptiveLimit
from ._breaker import CircuitBreaker, CircuitOpen
from ._call import Call
from ._errors import AuthenticationError, ConfigError, FluxError, InvalidRequestError
from ._http import Http
from ._limits import ConcurrencyLimit, RateLimit
from ._middleware import AttemptMiddleware, AttemptNext, chain
from ._models import GeneratedImage, GenerateRequest
from ._options import check_positive_int
from ._retry import Retry
from ._routes import Hedge, Route, RouteState, Strategy
from ._shared import SharedLimit
from ._steps import StepRunner, start_flow
from .providers._base import FlowProvider, Provider, StepKind

__all__ = ["Live", "Router", "RoutingError", "Strategy", "build_routes"]

_LATENCIES = 200  # recent successful call times kept per route


class RoutingError(FluxError):
    """No route could take the call (every circuit open, or the budget spent)."""

    retryable = True


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


class Router:
    """Runs each call on the routes in turn; see the module docstring."""

    def __init__(
        self,
        routes: Sequence[Live],
        *,
        strategy: Strategy,
        retry: Retry,
        hedge: Hedge | None,
        rng: random.Random | None = None,
    ) -> None:
        self.routes = list(routes)
        self.strategy = strategy
        self.retry = retry
        self.hedge = hedge
        self._rng = rng if rng is not None else random.Random()  # noqa: S311 - load spreading

    def accepting(self, request: GenerateRequest) -> list[Live]:
        """The routes whose rules accept ``request``, or `InvalidRequestError` naming each
        host's reason when none does."""
        accepted, reasons = [], []
        for live in self.routes:
            try:
                live.provider.rules.check(request, live.provider.name)
            except InvalidRequestError as exc:
                reasons.append(exc.message)
            else:
                accepted.append(live)
        if not accepted:
            raise InvalidRequestError(
                "no provider accepts this request: " + "; ".join(reasons),
                provider=", ".join(live.provider.name for live in self.routes),
            )
        return accepted

    def order(self, candidates: list[Live]) -> list[Live]:
        """The routes to try, first choice first."""
        if self.strategy == "cheapest":
            return sorted(candidates, key=_price)
        if self.strategy == "balanced" and len(candidates) > 1:
            healthy = [live for live in candidates if live.breaker.state == "closed"] or candidates
            first = self._two_choices(healthy)
            rest = [live for live in candidates if live is not first]
            return [first, *sorted(rest, key=lambda live: live.load)]
        return candidates

    def _two_choices(self, healthy: list[Live]) -> Live:
        """The less loaded of two different routes drawn at random by weight (drawn with
        replacement, both draws could be one full route while another had room)."""
        one = self._rng.choices(healthy, weights=[live.route.weight for live in healthy])[0]
        others = [live for live in healthy if live is not one]
        if not others:
            return one
        two = self._rng.choices(others, weights=[live.route.weight for live in others])[0]
        return one if one.load <= two.load else two

    async def __call__(self, call: Call) -> GeneratedImage:
        candidates = self.order(self.accepting(call.request))
        if self.hedge is not None:
            self.hedge.on_call()
        self.retry.budget.on_call()
        errors: list[FluxError] = []
        used: set[int] = set()
        free = False  # the next hop costs no retry token
        for position, live in enumerate(candidates):
            if id(live) in used or not live.breaker.try_acquire():
                continue
            if used and not free and not self.retry.budget.try_spend():
                live.breaker.release()
                break
            used.add(id(live))
            later = [c for c in candidates[position + 1 :] if id(c) not in used]
            backup = self._backup(later) if self.hedge is not None else None
            try:
                image = await self._run(call, live, bool(later), backup)
            except _Failed as failed:
                if not isinstance(failed.error, CircuitOpen):
                    errors.append(failed.error)
                if failed.backup_used and backup is not None:
                    used.add(id(backup))
                if not failed.moves_on:
                    raise self._final(call, errors) from None
                # Leaving a host whose circuit is open now spends no retry: the breaker
                # already bounds what it is sent, and the other hosts are healthy.
                free = live.breaker.state == "open"
                call.emit("failover", attempt=call.attempts, error=failed.error)
                continue
            self.retry.budget.on_success()
            if image.attempts != call.attempts:
                image = dataclasses.replace(image, attempts=call.attempts)
            return image
        if errors:
            raise self._final(call, errors)
        raise RoutingError(
            "no route could take the call: "
            + "; ".join(
                f"{live.provider.name}: circuit {live.breaker.state}"
                + (f" for {live.breaker.open_for:.0f} s more" if live.breaker.open_for else "")
                for live in candidates
            )
            + "; wait, or add a route",
            provider=", ".join(live.provider.name for live in candidates),
        )

    def _backup(self, later: list[Live]) -> Live | None:
        return next((live for live in later if live.breaker.state == "closed"), None)

    def _final(self, call: Call, errors: list[FluxError]) -> FluxError:
        last = errors[-1]
        last.attempts = call.attempts
        last.previous = tuple(e for e in call.errors if e is not last)
        return last

    async def _run(self, call: Call, live: Live, more: bool, backup: Live | None) -> GeneratedImage:
        """The image from ``live`` (or from a hedge on ``backup``), else `_Failed`."""
        delay = None
        if backup is not None and self.hedge is not None:
            delay = self.hedge.delay_for(live.latencies)
        if delay is None or backup is None or self.hedge is None:
            return await self._one(call, live, more)
        winner: list[GeneratedImage] = []
        failures: list[_Failed] = []
        done = anyio.Event()
        started = 1

        async def attempt(route: Live, scope: anyio.CancelScope) -> None:
            with scope:
                try:
                    winner.append(await self._one(call, route, True))
                except _Failed as failed:
                    failures.append(failed)
                    if len(failures) < started:
                        return
                done.set()
                return
            # cancelled: the other attempt won

        scopes = [anyio.CancelScope(), anyio.CancelScope()]
        backup_used = False
        async with anyio.create_task_group() as group:
            group.start_soon(attempt, live, scopes[0])
            with anyio.move_on_after(delay):
                await done.wait()
            if not done.is_set() and not failures and backup.breaker.try_acquire():
                if self.hedge.try_spend() and self.retry.budget.try_spend():
                    started = 2
                    backup_used = True
                    call.emit("hedge", attempt=call.attempts)
                    group.start_soon(attempt, backup, scopes[1])
                else:
                    backup.breaker.release()
            await done.wait()
            for scope in scopes:
                scope.cancel()
        if winner:
            return winner[0]
        failure = failures[-1]
        failure.backup_used = backup_used
        failure.moves_on = all(f.moves_on for f in failures)
        raise failure

    async def _one(self, call: Call, live: Live, more: bool) -> GeneratedImage:
        """One route's try at the call, its attempts added to the call's."""
        child = Call(
            call.request,
            live.provider,
            max_retries=call.max_retries,
            deadline=call.deadline,
            timeout=call.timeout,
            on_event=call.on_event,
        )
        child.failover = more
        child.meter = call.meter
        call.provider = live.provider
        live.calls += 1
        start = time.perf_counter()
        try:
            start_flow(child, live.flow_provider)
        except InvalidRequestError as exc:  # this host cannot express it; another may
            live.breaker.release()
            raise _Failed(exc, moves_on=True) from None
        try:
            image = await live.runner.run(child, new_call=False)
        except CircuitOpen as exc:  # opened while this call waited for a slot: nothing sent
            live.breaker.release()
            raise _Failed(exc, moves_on=True) from None
        except FluxError as exc:
            live.failures += 1
            moves_on = self._moves_on(child, exc)
            if moves_on or isinstance(exc, AuthenticationError):
                live.breaker.on_failure(exc, live.provider.name)
            else:
                live.breaker.release()
            raise _Failed(exc, moves_on) from None
        except BaseException:
            live.breaker.release()
            raise
        finally:
            call.attempts += child.attempts
            call.errors += child.errors
            call.hosts += child.hosts
            child.close_flow()
        live.breaker.on_success()
        live.latencies.append(time.perf_counter() - start)
        return image

    def _moves_on(self, child: Call, error: FluxError) -> bool:
        """Whether another host may take the call after ``error`` at this one."""
        if child.job is not None:
            return False  # a paid job exists at this host: never start a second one
        if isinstance(error, AuthenticationError):
            return True  # a wrong key here says nothing about the other hosts
        # The same rule as a retry at one host: never for an error that would repeat, a
        # submit the host may have taken, or (if the user said so) a maybe-billed failure.
        kind = cast(StepKind, error.step or "generate")
        return self.retry.may_retry(kind, error)


def _price(live: Live) -> tuple[bool, float]:
    return (live.route.price is None, live.route.price or 0.0)


def build_routes(
    routes: Sequence[Route],
    *,
    retry: Retry,
    http: Http,
    attempt_middleware: Sequence[AttemptMiddleware],
    concurrency: int | ConcurrencyLimit | SharedLimit | None,
    rate_limit: float | RateLimit | SharedLimit | None,
    breaker: CircuitBreaker,
) -> list[Live]:
    """Each route's runtime: its own limits (the client's numbers unless the route has
    its own; a shared limit object stays shared; without a number, an `AdaptiveLimit`
    of its own), breaker and step runner."""
    lives = []
    for route in routes:
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
    names = [live.provider.name for live in lives]
    if len(set(names)) != len(names):
        raise ConfigError(f"two routes share a provider name ({', '.join(names)}): rename one")
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
        return await call_next(call)


class _Failed(Exception):
    def __init__(self, error: FluxError, moves_on: bool) -> None:
        super().__init__(error.message)
        self.error = error
        self.moves_on = moves_on
        self.backup_used = False
