"""Metering one call: reserve before each billable attempt, classify it after, settle.

The client starts a `CallMeter` for each ``generate`` and puts it on the `Call` (the
router hands it to its per-route child calls, a hedge's second attempt included).
The step runner asks it before each attempt (`before`: the budget check) and tells it
after (`after`: the ledger, the event's cost), and when a flow ends (`flow_ended`: a
queue job is settled only then). A request that makes an image is a ``"generate"`` or
a ``"submit"``; polls, downloads and cancels cost nothing themselves.
"""

from __future__ import annotations

import contextvars
import sys
from collections.abc import Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from flux_sdk._base._errors import Billed, BudgetExceeded, FluxError

from ._ledger import Budget, Ledger, usd

if TYPE_CHECKING:
    from flux_sdk._base._models import GeneratedImage
    from flux_sdk._pipeline._call import Call

    from ._pricing import Price

__all__ = ["CallMeter", "batch_budget", "worst"]

# A batch's own budget (generate_many(budget=...)), seen by each of its calls.
batch_budget: contextvars.ContextVar[Budget | None] = contextvars.ContextVar(
    "flux_sdk_batch_budget", default=None
)

_BILLABLE = frozenset({"generate", "submit"})
_ORDER: dict[Billed, int] = {"no": 0, "maybe": 1, "yes": 2}


def worst(one: Billed, two: Billed) -> Billed:
    return one if _ORDER[one] >= _ORDER[two] else two


class CallMeter:
    """One call's spend, as it happens; see the module docstring."""

    def __init__(
        self,
        ledger: Ledger,
        prices: dict[str, Price | None],
        budgets: Sequence[Budget],
        tracer: Any = None,
    ) -> None:
        self.ledger = ledger
        self.prices = prices
        self.budgets = tuple(budgets)
        self.tracer = tracer
        self.cost = Decimal(0)  # what this call may have cost at most
        self.priced = True
        self.billed: Billed = "no"
        self.attempts = 0
        self._open: dict[int, Decimal | None] = {}  # the attempt in flight, per Call
        self._sent: set[int] = set()  # Calls whose attempt in flight has started sending
        self._jobs: dict[int, tuple[str, Decimal | None]] = {}  # accepted, not settled

    @property
    def cost_usd(self) -> float | None:
        return float(self.cost) if self.priced else None

    def amount(self, host: str, call: Call) -> Decimal | None:
        price = self.prices.get(host)
        return None if price is None else price.exact(call.request)

    def before(self, call: Call, kind: str) -> None:
        """Reserve the worst-case cost of the attempt about to be sent, or raise
        `BudgetExceeded` and send nothing."""
        self._sent.discard(id(call))
        if self.tracer is not None:
            self.tracer.attempt_started(call, kind)
        if kind not in _BILLABLE:
            return
        host = call.provider_name
        amount = self.amount(host, call)
        if amount is not None and self.budgets:
            taken: list[Budget] = []
            for budget in self.budgets:
                if not budget._reserve(amount):
                    for held in taken:
                        held._settle(amount, charged=False)
                    if self.tracer is not None:
                        self.tracer.attempt_ended(call, kind, None, None, "no", 0.0)
                    raise BudgetExceeded(
                        f"{host}: the next attempt could cost {usd(float(amount))}, which "
                        f"would pass the budget of {usd(budget.limit)} ({usd(budget.spent)} "
                        "spent or maybe spent, "
                        f"{usd(budget.reserved)} held for attempts in flight); it was not "
                        "sent: raise the budget to go on",
                        provider=host,
                        budget=budget.limit,
                        spent=budget.spent + budget.reserved,
                        needed=float(amount),
                    )
                taken.append(budget)
        self._open[id(call)] = amount

    def after(
        self, call: Call, kind: str, status: int | None, error: FluxError | None
    ) -> tuple[Billed, float | None]:
        """Account one finished attempt: what the host may have charged, and its cost."""
        host = call.provider_name
        self.attempts += 1
        self.ledger._attempt(host)
        billed: Billed = "no"
        cost: float | None = 0.0
        if kind in _BILLABLE:
            amount = self._open.pop(id(call), None)
            cost = None if amount is None else float(amount)
            if error is not None:
                billed = error.billed
                self._settle(host, billed, amount)
            elif kind == "submit":
                billed = "maybe"  # accepted: settled when the job ends
                self._jobs[id(call)] = (host, amount)
            else:
                billed = "yes"
                self._settle(host, billed, amount)
        if billed == "no":
            cost = 0.0
        if self.tracer is not None:
            self.tracer.attempt_ended(call, kind, status, error, billed, cost)
        return billed, cost

    def flow_ended(self, call: Call, error: BaseException | None) -> None:
        """Settle the call's accepted job: billed if it made an image, maybe billed if
        it failed (unless the host said it was not charged) or was cancelled."""
        job = self._jobs.pop(id(call), None)
        if job is None:
            return
        host, amount = job
        billed: Billed = "yes" if error is None else "maybe"
        if isinstance(error, FluxError) and error._billed == "no":
            billed = "no"
        self._settle(host, billed, amount)

    def _settle(self, host: str, billed: Billed, amount: Decimal | None) -> None:
        self.ledger._charge(host, billed, amount)
        self.billed = worst(self.billed, billed)
        charged = billed != "no"
        if amount is None:
            self.priced = self.priced and not charged
            return
        for budget in self.budgets:
            budget._settle(amount, charged)
        if charged:
            self.cost += amount

    def withdrawn(self, call: Call, kind: str) -> None:
        """An attempt refused before it was sent (its route's circuit opened): the
        reservation is given back."""
        amount = self._open.pop(id(call), None) if kind in _BILLABLE else None
        if amount is not None:
            for budget in self.budgets:
                budget._settle(amount, charged=False)
        if self.tracer is not None:
            self.tracer.attempt_ended(call, kind, None, None, "no", 0.0)

    def sending(self, call: Call) -> None:
        """The attempt's request is about to be written: from here the body may reach
        the host. Before it (waiting for a concurrency or rate slot) nothing was sent."""
        self._sent.add(id(call))

    def interrupted(self, call: Call, kind: str) -> bool:
        """An attempt cancelled: maybe billed if its request had started to go out (the
        host may have started on it; True), else withdrawn with its reservation given
        back (False)."""
        if id(call) not in self._sent:
            self.withdrawn(call, kind)
            return False
        self._sent.discard(id(call))
        if kind in _BILLABLE and id(call) in self._open:
            self._settle(call.provider_name, "maybe", self._open.pop(id(call)))
        if self.tracer is not None:
            self.tracer.attempt_ended(call, kind, None, None, "maybe", None)
        return True

    def succeeded(self, call: Call, image: GeneratedImage) -> float | None:
        """Count the call; its cost (USD, maybe-billed attempts included)."""
        if self.attempts:
            self.ledger._call(image.provider, image=True)
        else:
            self.ledger.cache_hits += 1  # answered without a request
        if self.tracer is not None:
            self.tracer.call_ended(call, self, image, None)
        return self.cost_usd

    def failed(self, call: Call, error: FluxError) -> None:
        """Count the call; the error it raises now covers the whole call's spend."""
        if self.attempts:
            self.ledger._call(call.provider_name, image=False)
        error.billed = worst(self.billed, error.billed if error.step else "no")
        error.cost = self.cost_usd
        if self.tracer is not None:
            self.tracer.call_ended(call, self, None, error)

    def ended(self, call: Call, error: BaseException) -> None:
        """A call cancelled or stopped by something other than a FluxError."""
        if self.tracer is not None:
            self.tracer.call_ended(call, self, None, error)


def make_tracer() -> Any:
    """The OpenTelemetry tracer when opentelemetry-api is installed; without it nothing
    is imported and nothing is traced."""
    return _LazyTracer() if _installed("opentelemetry") else None


def _installed(name: str) -> bool:
    """Whether ``import name`` (a top-level name) would find it, importing nothing: what
    ``importlib.util.find_spec`` does, without loading importlib.util (and importlib.abc)
    into every first generate."""
    if name in sys.modules:
        return sys.modules[name] is not None  # None: hidden, ``import`` would fail
    finders = (getattr(finder, "find_spec", None) for finder in sys.meta_path)
    return any(find is not None and find(name, None) is not None for find in finders)


class _LazyTracer:
    """The tracer, made once the application has imported opentelemetry itself.

    Importing it costs 8-16 ms of a client's first call. Until the application imports
    it, no tracer or meter provider can have been set, so every span and count would go
    to the API's no-op ones: the calls made before then are not traced either way.
    """

    def __init__(self) -> None:
        self._tracer: Any = None

    def __getattr__(self, name: str) -> Any:
        tracer = self._tracer
        if tracer is None:
            if "opentelemetry" not in sys.modules:
                return _nothing
            from ._otel import Tracer

            tracer = self._tracer = Tracer.create()
        return getattr(tracer, name)


def _nothing(*args: Any) -> None:
    return None
