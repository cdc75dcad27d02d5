"""How far a batch has got: the counts `on_progress` receives, and how they advance."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

__all__ = ["BatchProgress", "Outcome", "advance"]

Outcome = Literal["done", "skipped", "failed"]
"""How one item ended: generated now, already there from an earlier run, or failed."""


@dataclass(frozen=True, slots=True)
class BatchProgress:
    """Where a batch stands; ``on_progress`` gets a new one each time an item ends.

    ``done`` counts images generated in this run, ``skipped`` those already in the
    directory from an earlier run, ``failed`` the items that ended with an error (each
    one's `FluxError` is in the results). ``retries`` counts the extra attempts spent in
    this run, and ``elapsed`` the seconds since the batch started. ``concurrency`` is
    the client's concurrency limit when the item ended (it moves with an adaptive
    limit), or None when the batch was not run by a client.
    """

    total: int
    done: int = 0
    skipped: int = 0
    failed: int = 0
    retries: int = 0
    elapsed: float = 0.0
    concurrency: int | None = None

    @property
    def finished(self) -> int:
        """Items that have ended, one way or another."""
        return self.done + self.skipped + self.failed

    @property
    def remaining(self) -> int:
        """Items not ended yet; after a batch that was stopped, those it never ran."""
        return self.total - self.finished

    @property
    def rate(self) -> float:
        """Images generated per second in this run; skipped items do not count."""
        return self.done / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def eta(self) -> float | None:
        """Seconds until the batch ends at the pace so far, or None before any item has."""
        ended = self.done + self.failed  # skipped items cost no time and say nothing
        if ended == 0 or self.elapsed <= 0:
            return None
        return self.remaining * self.elapsed / ended


def advance(
    progress: BatchProgress,
    outcome: Outcome,
    *,
    attempts: int,
    elapsed: float,
    concurrency: int | None = None,
) -> BatchProgress:
    """``progress`` after one more item ended; a skipped item spent no attempts."""
    retries = 0 if outcome == "skipped" else max(attempts - 1, 0)
    return dataclasses.replace(
        progress,
        done=progress.done + (outcome == "done"),
        skipped=progress.skipped + (outcome == "skipped"),
        failed=progress.failed + (outcome == "failed"),
        retries=progress.retries + retries,
        elapsed=elapsed,
        concurrency=concurrency,
    )
