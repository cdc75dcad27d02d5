"""What a client has spent, per host (`Ledger`), and the most it may spend (`Budget`).

Every sum is a ``Decimal`` inside and a float outside. An attempt the host may have
charged for (``billed="maybe"``) counts in ``cost_at_most`` and against a budget: the
spend never passes a budget even if every doubtful attempt was charged.
"""

from __future__ import annotations

import math
import threading
from decimal import Decimal
from typing import TYPE_CHECKING

from flux_sdk._base._errors import Billed, ConfigError

if TYPE_CHECKING:  # built only when the spend is read: the first generate does not load it
    from ._hostspend import HostSpend

__all__ = ["Budget", "Ledger", "usd"]


def usd(amount: float | None) -> str:
    """An amount of USD as the CLI and the docs print it: ``USD 0.0132``."""
    if amount is None:
        return "USD ?"
    return f"USD {amount:.4f}" if amount < 100 else f"USD {amount:,.2f}"


class _Account:
    """One host's running counts (a plain class: a dataclass costs ~1 ms to build at
    import, and every first generate imports this module)."""

    __slots__ = (
        "at_most",
        "attempts",
        "billed",
        "calls",
        "cost",
        "images",
        "maybe_billed",
        "priced",
    )

    def __init__(self, priced: bool = True) -> None:
        self.calls = self.images = self.attempts = self.billed = self.maybe_billed = 0
        self.cost = Decimal(0)
        self.at_most = Decimal(0)
        self.priced = priced


class Ledger:
    """The spend of one client, per host: ``client.ledger``.

    ``ledger["fal"]`` (or ``ledger.hosts``) gives a `HostSpend` per host, ``ledger.total``
    the sum, ``cost`` and ``cost_at_most`` the totals in USD, ``cache_hits`` the calls a
    cache answered at no cost. Counts only grow; read them whenever you like.
    """

    def __init__(self) -> None:
        self._accounts: dict[str, _Account] = {}
        self._lock = threading.Lock()  # batches from several threads share one client rarely
        self.cache_hits = 0

    def _account(self, host: str) -> _Account:
        account = self._accounts.get(host)
        if account is None:
            account = self._accounts[host] = _Account()
        return account

    def _attempt(self, host: str) -> None:
        with self._lock:
            self._account(host).attempts += 1

    def _charge(self, host: str, billed: Billed, amount: Decimal | None) -> None:
        with self._lock:
            account = self._account(host)
            if amount is None:
                account.priced = False
                amount = Decimal(0)
            if billed == "yes":
                account.billed += 1
                account.cost += amount
                account.at_most += amount
            elif billed == "maybe":
                account.maybe_billed += 1
                account.at_most += amount

    def _call(self, host: str, image: bool) -> None:
        with self._lock:
            account = self._account(host)
            account.calls += 1
            account.images += image

    def __getitem__(self, host: str) -> HostSpend:
        return self.hosts.get(host) or _spend(host, _Account())

    @property
    def hosts(self) -> dict[str, HostSpend]:
        """A `HostSpend` for each host this client has sent a request to."""
        with self._lock:
            return {name: _spend(name, a) for name, a in self._accounts.items()}

    @property
    def total(self) -> HostSpend:
        """Every host's account added up (``provider="all"``)."""
        with self._lock:
            accounts = list(self._accounts.values())
        whole = _Account(priced=all(a.priced for a in accounts))
        for a in accounts:
            whole.calls += a.calls
            whole.images += a.images
            whole.attempts += a.attempts
            whole.billed += a.billed
            whole.maybe_billed += a.maybe_billed
            whole.cost += a.cost
            whole.at_most += a.at_most
        return _spend("all", whole)

    @property
    def cost(self) -> float | None:
        """USD certainly owed (None if a host used has no known price)."""
        return self.total.cost

    @property
    def cost_at_most(self) -> float | None:
        """USD owed if every maybe-billed attempt was charged."""
        return self.total.cost_at_most

    def summary(self) -> str:
        """One line: what was spent, what it may have been, and how many attempts were
        doubtful; how the CLI reports a batch."""
        total = self.total
        text = f"spent {usd(total.cost)}"
        if total.maybe_billed:
            text += (
                f" (at most {usd(total.cost_at_most)}: {total.maybe_billed} "
                f"attempt{'s' if total.maybe_billed != 1 else ''} may have been billed)"
            )
        text += f" for {total.images} image{'s' if total.images != 1 else ''}"
        if self.cache_hits:
            text += f", {self.cache_hits} from the cache"
        return text

    def __repr__(self) -> str:
        total = self.total
        return (
            f"Ledger(calls={total.calls}, images={total.images}, cost={total.cost!r}, "
            f"cost_at_most={total.cost_at_most!r})"
        )


def _spend(name: str, a: _Account) -> HostSpend:
    from ._hostspend import HostSpend

    return HostSpend(
        provider=name,
        calls=a.calls,
        images=a.images,
        attempts=a.attempts,
        billed=a.billed,
        maybe_billed=a.maybe_billed,
        cost=float(a.cost) if a.priced else None,
        cost_at_most=float(a.at_most) if a.priced else None,
    )


class Budget:
    """The most a client (or one batch) may spend, in USD.

    Before each attempt that the host could charge for, its worst-case cost is reserved;
    an attempt that does not fit is not sent. When the attempt ends, its reservation is
    released if the host cannot have charged, and kept as spent otherwise (also when it
    only may have). So ``spent`` never passes ``limit``.
    """

    def __init__(self, limit: float, *, what: str = "budget") -> None:
        if isinstance(limit, bool) or not isinstance(limit, (int, float)):
            raise ConfigError(f"{what} must be a number of USD (got {limit!r})")
        if not (math.isfinite(limit) and limit >= 0):
            raise ConfigError(f"{what} must be a finite number of USD >= 0 (got {limit!r})")
        self._limit = Decimal(repr(float(limit)))
        self._spent = Decimal(0)
        self._reserved = Decimal(0)
        self._lock = threading.Lock()

    @property
    def limit(self) -> float:
        return float(self._limit)

    @property
    def spent(self) -> float:
        """USD spent or possibly spent so far (maybe-billed attempts counted)."""
        return float(self._spent)

    @property
    def reserved(self) -> float:
        """USD held for attempts in flight."""
        return float(self._reserved)

    @property
    def remaining(self) -> float:
        return float(self._limit - self._spent - self._reserved)

    def _reserve(self, amount: Decimal) -> bool:
        with self._lock:
            if self._spent + self._reserved + amount > self._limit:
                return False
            self._reserved += amount
            return True

    def _settle(self, amount: Decimal, charged: bool) -> None:
        with self._lock:
            self._reserved -= amount
            if charged:
                self._spent += amount

    def __repr__(self) -> str:
        return f"Budget(limit={self.limit}, spent={self.spent}, reserved={self.reserved})"
