"""`HostSpend`: one host's account as a `Ledger` reports it.

Its own module so that a client's first generate, which counts its spend but reads
none, does not pay for building this dataclass at import.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["HostSpend"]


@dataclass(frozen=True, slots=True)
class HostSpend:
    """One host's account in a `Ledger`.

    ``calls`` that ended at this host and ``images`` it delivered; ``attempts`` counts
    every HTTP request sent to it (polls and downloads too); ``billed`` the attempts it
    charged for (an image came back) and ``maybe_billed`` those it may have charged for.
    ``cost`` is what is certainly owed, ``cost_at_most`` adds every maybe-billed
    attempt. Costs are None for a host without a known price.
    """

    provider: str
    calls: int = 0
    images: int = 0
    attempts: int = 0
    billed: int = 0
    maybe_billed: int = 0
    cost: float | None = 0.0
    cost_at_most: float | None = 0.0
