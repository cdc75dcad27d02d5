"""`FluxClient`: checks what the caller asks for, builds one `Call`, runs the chain."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, cast

import anyio
import httpx

from ._base._errors import ConfigError, FluxError, InvalidRequestError
from ._base._events import EventHook
from ._base._loops import LoopBinding
from ._base._models import GeneratedImage, GenerateRequest, JsonValue
from ._base._options import check_positive_int, check_retries, check_seconds, check_timeout
from ._batching._many import ManyImages
from ._pipeline._background import Background
from ._pipeline._call import Call, make_request
from ._pipeline._middleware import AttemptMiddleware, Deadline, Middleware, chain
from ._policy._adaptive import AdaptiveLimit
from ._policy._breaker import CircuitBreaker
from ._policy._limits import CombinedLimit, ConcurrencyLimit, RateLimit
from ._policy._retry import Retry
from ._policy._shared import SharedLimit
from ._routing._routes import Hedge, Route, Strategy, as_routes
from ._routing._steps import StepRunner, start_flow
from ._spend._ledger import Budget, Ledger
from ._spend._meter import CallMeter, batch_budget, make_tracer
from ._spend._pricing import Price, check_priced, price_table
from ._transport._http import DEFAULT_MAX_RESPONSE_BYTES, DEFAULT_TIMEOUT, Http
from .providers._base import FlowProvider, Provider

if TYPE_CHECKING:  # routing loads only for a client of several providers
    from ._routing._router import Router
    from ._routing._state import RouteState

__all__ = ["DEFAULT_TIMEOUT", "FluxClient"]


class FluxClient(ManyImages):
    """Generates images through one provider; use it as ``async with FluxClient(...)``.

    Each ``generate`` builds one `Call` and hands it down the chain, outermost first::

        Deadline -> your middleware (per call) -> for each request the provider needs:
            Retry -> RateLimit -> ConcurrencyLimit -> your attempt_middleware -> I/O

    The deadline is outermost so retries cannot outlive the caller's budget; your
    per-call middleware (a cache, a circuit breaker) runs once per call and holds no
    slot; the rate and concurrency limits sit inside the retries so every request is
    counted and a backoff sleep or a poll interval holds no slot; ``attempt_middleware``
    sees each HTTP request. ``max_retries``, ``max_concurrency`` and ``rate_limit`` take
    a number, or a configured `Retry`, `ConcurrencyLimit` or `RateLimit` (to tune
    backoff, or to share a limit between clients). Without ``max_concurrency`` the limit
    adapts to the host (an `AdaptiveLimit`: it grows while latency holds and nothing is
    refused, and falls on 429s and rising latency); a number is a fixed limit.
    ``timeout`` bounds each request, ``deadline`` the whole call.

    It owns its connections: one single-connection ``httpx.AsyncClient`` per request in
    flight (see ``_connections.py``), so no request ever waits for a connection. Pass
    ``http_client`` to use your own client instead; it is used for every request and
    left open. A provider that carries a ``transport`` (an ``httpx.AsyncBaseTransport``,
    as `Emulator` does) has its requests sent through it unless you pass ``http_client``.
    A body over ``max_response_bytes`` is refused without being read.
    ``on_event`` receives a `FluxEvent` per request, retry, success and failure.

    What it spends is counted in ``client.ledger`` at each host's list price (or
    ``prices={"name": USD or Price}``, or a `Route`'s ``price``); ``budget`` (USD) stops
    any attempt that could take the spend past it (`BudgetExceeded`). ``cache`` (a
    `DiskCache`) answers seeded requests it has seen from disk. See "Costs, budgets
    and caching" in the docs.
    """

    def __init__(
        self,
        provider: Provider | FlowProvider | Sequence[Provider | FlowProvider | Route],
        *,
        max_retries: int | Retry = 3,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        deadline: float | None = None,
        max_concurrency: int | ConcurrencyLimit | SharedLimit | None = None,
        rate_limit: float | RateLimit | SharedLimit | None = None,
        middleware: Sequence[Middleware] = (),
        attempt_middleware: Sequence[AttemptMiddleware] = (),
        on_event: EventHook | None = None,
        http_client: httpx.AsyncClient | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        routing: Strategy = "failover",
        hedge: Hedge | None = None,
        breaker: CircuitBreaker | None = None,
        budget: float | None = None,
        prices: dict[str, float | Price] | None = None,
        cache: Middleware | None = None,
    ) -> None:
        routes = as_routes(provider)
        if routes is not None:
            provider = routes[0].provider
        provider = cast("Provider | FlowProvider", provider)
        # Decided once: a runtime Protocol isinstance cost ~10 us a call (measured 2026-11).
        self._flow = isinstance(provider, FlowProvider) and not isinstance(provider, Provider)
        if not self._flow and not isinstance(provider, Provider):
            raise ConfigError(
                f"{provider!r} is not a provider: it must have name, rules, and either "
                "build_request and parse_response, or generate_flow"
            )
        if routing not in ("failover", "balanced", "cheapest"):
            raise ConfigError(
                f'routing must be "failover", "balanced" or "cheapest" (got {routing!r})'
            )
        if hedge is not None and not isinstance(hedge, Hedge):
            raise ConfigError(f"hedge must be a Hedge(...) (got {hedge!r})")
        if breaker is not None and not isinstance(breaker, CircuitBreaker):
            raise ConfigError(f"breaker must be a CircuitBreaker(...) (got {breaker!r})")
        self.provider: Provider | FlowProvider = provider
        self.retry = (
            max_retries
            if isinstance(max_retries, Retry)
            else Retry(check_retries(max_retries, ConfigError))
        )
        self.timeout = check_timeout(timeout, ConfigError)
        self.deadline = (
            None if deadline is None else check_seconds(deadline, ConfigError, "deadline")
        )
        self.concurrency: ConcurrencyLimit | SharedLimit
        if max_concurrency is None:
            self.concurrency = AdaptiveLimit()
        elif isinstance(max_concurrency, (ConcurrencyLimit, SharedLimit)):
            self.concurrency = max_concurrency
        else:
            self.concurrency = ConcurrencyLimit(
                check_positive_int(max_concurrency, ConfigError, "max_concurrency")
            )
        self.concurrency.limit  # noqa: B018 -- a SharedLimit without concurrency= says so
        if rate_limit is max_concurrency:  # one SharedLimit enforces both: once is enough
            rate_limit = None
        self.rate_limit: RateLimit | SharedLimit | None
        if rate_limit is None or isinstance(rate_limit, (RateLimit, SharedLimit)):
            self.rate_limit = rate_limit
        else:
            self.rate_limit = RateLimit(rate_limit)  # a ConfigError that names the setting
        self.max_response_bytes = check_positive_int(
            max_response_bytes, ConfigError, "max_response_bytes"
        )
        for name, layers in (
            ("middleware", middleware),
            ("attempt_middleware", attempt_middleware),
        ):
            if (
                isinstance(cast(object, layers), (str, bytes))
                or not isinstance(cast(object, layers), Iterable)
                or not all(map(callable, layers))
            ):
                raise ConfigError(f"{name} must be a sequence of callables (got {layers!r})")
        if on_event is not None and not callable(on_event):
            raise ConfigError(f"on_event must be callable (got {on_event!r})")
        self.on_event = on_event
        if http_client is not None and not isinstance(http_client, httpx.AsyncClient):
            raise ConfigError(
                f"http_client must be an httpx.AsyncClient (got {type(http_client).__name__})"
            )
        transport = getattr(provider, "transport", None)
        if transport is not None and not isinstance(transport, httpx.AsyncBaseTransport):
            raise ConfigError(
                f"{provider.name}'s transport must be an httpx.AsyncBaseTransport "
                f"(got {type(transport).__name__})"
            )
        self._http = Http(
            timeout=self.timeout,
            max_response_bytes=self.max_response_bytes,
            http_client=http_client,
            transport=None if http_client is not None else transport,
        )
        # Why this order: see the class docstring.
        limits: list[AttemptMiddleware] = [] if self.rate_limit is None else [self.rate_limit]
        self.attempt_middleware: tuple[AttemptMiddleware, ...] = (
            *limits,
            self.concurrency,
            *attempt_middleware,
        )
        if cache is not None and not callable(cache):
            raise ConfigError(f"cache must be a DiskCache(...) (got {cache!r})")
        # The cache innermost of the per-call layers: it keys the request as sent.
        self.middleware: tuple[Middleware, ...] = (
            Deadline(),
            *middleware,
            *(() if cache is None else (cache,)),
        )
        self.ledger = Ledger()
        self.prices = price_table(
            [
                (r.provider.name, r.price, getattr(r.provider, "price", None))
                for r in (routes or [Route(provider)])
            ],
            prices,
        )
        self.budget = None if budget is None else Budget(budget)
        if self.budget is not None:
            check_priced(self.prices, "budget=")
        self._tracer = make_tracer()
        self._steps = StepRunner(
            retry=self.retry,
            attempt_chain=lambda send: chain(self.attempt_middleware, send),
            http=self._http,
            flow_provider=self._flow,
        )
        self._router: Router | None = None
        self._route_https: list[Http] = []
        # A hedge's losing job is cancelled here, not while its caller waits.
        self._background = Background()
        if routes is not None:
            from ._routing._router import Router, build_routes
            from ._routing._routes import route_https

            self._route_https = route_https(
                routes,
                timeout=self.timeout,
                max_response_bytes=self.max_response_bytes,
                http_client=http_client,
            )
            lives = build_routes(
                routes,
                retry=self.retry,
                https=self._route_https,
                attempt_middleware=attempt_middleware,
                concurrency=max_concurrency,
                rate_limit=rate_limit,
                breaker=breaker if breaker is not None else CircuitBreaker(),
            )
            self._router = Router(
                lives,
                strategy=routing,
                retry=self.retry,
                hedge=hedge,
                background=self._background,
            )
            self.attempt_middleware = tuple(attempt_middleware)
            # A batch runs as many items at once as the routes can take together.
            self.concurrency = CombinedLimit(live.concurrency for live in lives)
        self._chain = chain(self.middleware, self._router or self._steps)
        self._closed = False
        self._loop = LoopBinding()
        self._running: set[anyio.CancelScope] = set()
        self._idle: anyio.Event | None = None

    def __repr__(self) -> str:
        if self._router is not None:
            names = ", ".join(live.provider.name for live in self._router.routes)
            return f"FluxClient([{names}], routing={self._router.strategy!r})"
        return f"FluxClient({self.provider!r})"

    @property
    def routes(self) -> list[RouteState]:
        """Each route's state (circuit, in flight, latency, error rate), for dashboards;
        empty for a client of one provider."""
        if self._router is None:
            return []
        return [live.state() for live in self._router.routes]

    async def __aenter__(self) -> FluxClient:
        if self._router is not None and self._router.hedge is not None:
            await self._background.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connections it made (not a client passed in). Safe to call twice.

        Calls still running are stopped first: each raises `ConfigError` saying the
        client was closed, and no request is sent after ``aclose`` returns.
        """
        if self._closed:
            return
        self._loop.check()
        self._closed = True
        if self._running:
            self._idle = anyio.Event()
            for scope in self._running:
                scope.cancel()
            with anyio.CancelScope(shield=True):
                await self._idle.wait()
        await self._background.close()  # each piece bounded: a job cancel's own timeout
        for http in self._route_https:
            await http.aclose()
        await self._http.aclose()

    async def generate(
        self,
        prompt_or_request: str | GenerateRequest,
        *,
        seed: int | None = None,
        steps: int | None = None,
        width: int | None = None,
        height: int | None = None,
        extra_body: dict[str, JsonValue] | None = None,
        max_retries: int | None = None,
        deadline: float | None = None,
        timeout: float | httpx.Timeout | None = None,  # noqa: ASYNC109 - per request, as httpx
    ) -> GeneratedImage:
        """Generate one image.

        Everything is checked before anything is sent: a bad value raises
        `InvalidRequestError`. Keyword arguments override the fields of a
        `GenerateRequest` passed in; ``extra_body`` holds provider-specific fields sent
        unchanged (merged over the request's own). ``max_retries``, ``deadline`` and
        ``timeout`` override the client's for this call only.
        """
        if self._closed:
            raise ConfigError("this FluxClient is closed; create a new one")
        self._loop.check()
        request = make_request(prompt_or_request, seed, steps, width, height, extra_body)
        call = Call(
            request,
            self.provider,
            max_retries=(
                self.retry.max_retries
                if max_retries is None
                else check_retries(max_retries, InvalidRequestError)
            ),
            deadline=(
                self.deadline
                if deadline is None
                else check_seconds(deadline, InvalidRequestError, "deadline")
            ),
            timeout=(
                self.timeout if timeout is None else check_timeout(timeout, InvalidRequestError)
            ),
            on_event=self.on_event,
        )
        if self._router is not None:
            call.provider = self._router.accepting(request)[0].provider
        else:
            self.provider.rules.check(request, self.provider.name)
            start_flow(call, self._flow)
        start = time.perf_counter()
        scope = anyio.CancelScope()
        self._running.add(scope)
        budgets = [b for b in (self.budget, batch_budget.get()) if b is not None]
        meter = call.meter = CallMeter(self.ledger, self.prices, budgets, self._tracer)
        if self._tracer is not None:
            self._tracer.call_started(call)
        try:
            with scope:
                image = await self._chain(call)
            if scope.cancelled_caught:
                raise ConfigError(
                    "this FluxClient was closed while the call was running; "
                    "close the client only after its calls have ended",
                    provider=self.provider.name,
                )
        except FluxError as exc:
            exc.hosts = tuple(call.hosts)
            meter.failed(call, exc)
            call.emit(
                "failure",
                attempt=call.attempts,
                elapsed=time.perf_counter() - start,
                error=exc,
                billed=exc.billed,
                cost=exc.cost,
            )
            raise
        except BaseException as exc:
            meter.ended(call, exc)
            raise
        finally:
            call.close_flow()
            self._running.discard(scope)
            if self._idle is not None and not self._running:
                self._idle.set()
        elapsed = time.perf_counter() - start
        image = dataclasses.replace(
            image, elapsed=elapsed, hosts=tuple(call.hosts), cost=meter.succeeded(call, image)
        )
        call.emit("success", attempt=image.attempts, elapsed=elapsed, billed="yes", cost=image.cost)
        return image

    def _check_rules(self, request: GenerateRequest) -> None:
        """Raise `InvalidRequestError` unless the provider (or, routed, some route) takes it."""
        if self._router is not None:
            self._router.accepting(request)
        else:
            self.provider.rules.check(request, self.provider.name)
