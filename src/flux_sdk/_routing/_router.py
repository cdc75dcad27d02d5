"""Routing one call over several providers: order, failover, circuit breakers, hedging.

The router is the innermost per-call layer of a client made with a list of providers
(in place of the single-provider step runner). For each call it lists the routes whose
rules accept the request, orders them by the strategy (`_balance`), and tries them in
turn. Each route runs the call with its own limits; inside a route a failure is retried
only when the host asked for it (``Retry-After``), otherwise the call moves to the next
route. Moving on spends a token of the client's retry budget, and the caller's deadline
holds across routes (it is outside). An accepted queue job is never sent to another
host, nor a submit the host may have taken.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Sequence
from typing import cast

import anyio

from flux_sdk._base._errors import (
    BadRequestError,
    BudgetExceeded,
    ConfigError,
    FluxError,
    InvalidRequestError,
    InvalidResponseError,
    ProviderError,
    TransportError,
)
from flux_sdk._base._models import GeneratedImage, GenerateRequest
from flux_sdk._pipeline._background import Background
from flux_sdk._pipeline._call import Call
from flux_sdk._policy._breaker import CircuitOpen
from flux_sdk._policy._retry import Retry
from flux_sdk.providers._base import StepKind

from . import _balance, _live
from ._live import Live, build_routes
from ._routes import Hedge, Strategy
from ._steps import start_flow

__all__ = ["Live", "Router", "RoutingError", "Strategy", "build_routes"]


class RoutingError(FluxError):
    """No route could take the call (every circuit open, or the budget spent)."""

    retryable = True


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
        background: Background | None = None,
    ) -> None:
        self.routes = list(routes)
        self.background = background
        self.strategy = strategy
        self.retry = retry
        self.hedge = hedge
        self._rng = rng if rng is not None else random.Random()  # noqa: S311 - load spreading

    def accepting(self, request: GenerateRequest, call: Call | None = None) -> list[Live]:
        """The routes whose rules accept ``request``, or `InvalidRequestError` naming each
        host's reason when none does. A route that cannot honour the request as asked (a
        size it does not take) is skipped, never sent something else; with ``call``, a
        ``"skip"`` event names it and why."""
        accepted, reasons = [], []
        for live in self.routes:
            try:
                live.provider.rules.check(request, live.provider.name)
            except InvalidRequestError as exc:
                reasons.append(exc.message)
                if call is not None and call.on_event is not None:
                    chosen, call.provider = call.provider, live.provider
                    call.emit("skip", attempt=call.attempts, error=exc)
                    call.provider = chosen
            else:
                accepted.append(live)
        if not accepted:
            raise InvalidRequestError(
                "no provider accepts this request: " + "; ".join(reasons),
                provider=", ".join(live.provider.name for live in self.routes),
            )
        return accepted

    def order(self, candidates: list[Live]) -> list[Live]:
        """The routes to try, first choice first (see `_balance.order`)."""
        return _balance.order(candidates, self.strategy, self._rng)

    async def __call__(self, call: Call) -> GeneratedImage:
        accepted = self.accepting(call.request, call)
        for live in accepted:  # at most one read per route every 50 ms, never failing
            if live.shared is not None and live.shared.stale():
                await live.shared.refresh(live.pending)
        candidates = self.order(accepted)
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
            if not used:
                for other in accepted:
                    other.tried_first(other is live)
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
        hedge = self.hedge
        delay = None
        if backup is not None and hedge is not None:
            delay = hedge.delay_for(live.samples, backup.samples, live.share)
        if delay is None or backup is None or hedge is None:
            return await self._one(call, live, more)
        winner: list[GeneratedImage] = []
        failures: list[_Failed] = []
        children: list[Call] = []
        done = anyio.Event()
        started = 1

        async def attempt(route: Live, scope: anyio.CancelScope, admit: bool) -> None:
            # The first route's call given up on because the hedge won took longer than
            # it ran: that counts for the next delay (else rescued tails would vanish).
            lost = None if admit else lambda: bool(winner)
            with scope:
                try:
                    winner.append(await self._one(call, route, True, children, admit, lost))
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
            group.start_soon(attempt, live, scopes[0], False)
            with anyio.move_on_after(delay):
                await done.wait()
            # Tokens are checked now but spent only when the hedge's request is sent.
            ready = not done.is_set() and not failures and hedge.can_spend()
            if ready and backup.breaker.try_acquire():
                started = 2
                backup_used = True
                call.emit("hedge", attempt=call.attempts)
                group.start_soon(attempt, backup, scopes[1], True)
            await done.wait()
            # The winner returns now: a loser's accepted job is cancelled on its host in
            # the client's background group (bounded), not while the caller waits.
            for child in children:
                child.background = self.background
            for scope in scopes:
                scope.cancel()
        if winner:
            return winner[0]
        failure = failures[-1]
        failure.backup_used = backup_used
        failure.moves_on = all(f.moves_on for f in failures)
        raise failure

    async def _one(
        self,
        call: Call,
        live: Live,
        more: bool,
        children: list[Call] | None = None,
        hedged: bool = False,
        lost: Callable[[], bool] | None = None,
    ) -> GeneratedImage:
        """One route's try at the call, its attempts added to the call's."""
        child = Call(
            same_image(call.request, live),
            live.provider,
            max_retries=call.max_retries,
            deadline=call.deadline,
            timeout=call.timeout,
            on_event=call.on_event,
        )
        child.failover = more
        child.meter = call.meter
        if hedged:
            child.admit = self._pay_hedge
        if children is not None:
            children.append(child)
        call.provider = live.provider
        live.calls += 1
        start = _live._now()
        try:
            start_flow(child, live.flow_provider)
        except InvalidRequestError as exc:  # this host cannot express it; another may
            live.breaker.release()
            raise _Failed(exc, moves_on=True) from None
        live.pending += 1
        try:
            image = await live.runner.run(child, new_call=False)
        except CircuitOpen as exc:  # opened while this call waited for a slot: nothing sent
            live.breaker.release()
            raise _Failed(exc, moves_on=True) from None
        except FluxError as exc:
            live.failures += 1
            # Every failure that is the host's counts for its circuit, whether or not the
            # call moves on: a host failing in a way that keeps the call there (a submit
            # answered 500, a 5xx under retry_maybe_billed=False) must still be left.
            if _host_fault(exc):
                live.breaker.on_failure(exc, live.provider.name)
            else:
                live.breaker.release()
            raise _Failed(exc, self._moves_on(child, exc)) from None
        except BaseException:
            live.breaker.release()
            if lost is not None and lost():
                live.gave_up(_live._now() - start, live.admitted.get(id(child)))
            raise
        finally:
            live.pending -= 1
            admitted = live.admitted.pop(id(child), None)
            freed = live.freed.pop(id(child), None)
            call.attempts += child.attempts
            call.errors += child.errors
            call.hosts += child.hosts
            child.close_flow()
        live.breaker.on_success()
        live.answered(_live._now() - start)
        if admitted is not None:
            live.served(admitted, freed)
        return image

    def _pay_hedge(self) -> bool:
        hedge = self.hedge
        if hedge is None or not hedge.try_spend():
            return False
        if self.retry.budget.try_spend():
            return True
        hedge.refund()
        return False

    def _moves_on(self, child: Call, error: FluxError) -> bool:
        """Whether another host may take the call after ``error`` at this one."""
        if child.job is not None:
            return False  # a paid job exists at this host: never start a second one
        if isinstance(error, (BudgetExceeded, ConfigError)):
            return False  # the client's own limits: the same at every host
        if error.billed == "no" and _host_fault(error):
            # Nothing can have been charged (a wrong key, a spent quota, a refusal, a
            # request that never left): another host cannot make it a second payment.
            return True
        # The same rule as a retry at one host: never for an error that would repeat, a
        # submit the host may have taken, or (if the user said so) a maybe-billed failure.
        kind = cast(StepKind, error.step or "generate")
        return self.retry.may_retry(kind, error)


def _host_fault(error: FluxError) -> bool:
    """Whether ``error`` says something about the host (counted by its circuit), rather
    than about the request (a 400 that would fail anywhere) or the client."""
    if isinstance(error, BadRequestError) and not error.retryable:
        return False
    return isinstance(error, (ProviderError, TransportError, InvalidResponseError))


class _Failed(Exception):
    def __init__(self, error: FluxError, moves_on: bool) -> None:
        super().__init__(error.message)
        self.error = error
        self.moves_on = moves_on
        self.backup_used = False


# FLUX.1 [schnell]'s native size: Together's, Baseten's, Hugging Face's and the OpenAI-style
# hosts' default, where fal's is 1024x768. A routed call that names no size gets this one
# on every route that takes a size, so the route that serves it does not change the image.
ROUTED_SIZE = 1024


def same_image(request: GenerateRequest, live: Live) -> GenerateRequest:
    """``request`` as this route is sent it: with the routed default size when the caller
    named none and the host takes a size (a host that takes none makes its fixed size)."""
    if request.width is not None or request.height is not None:
        return request  # the caller's size: routes that cannot make it were skipped
    rules = live.provider.rules
    if rules.size is None or not rules.size[0] <= ROUTED_SIZE <= rules.size[1]:
        return request
    if ROUTED_SIZE % rules.size_multiple:
        return request
    return request.replace(width=ROUTED_SIZE, height=ROUTED_SIZE)
