"""`Hedge`: when a call still running on one host gets a second attempt on another.

A hedge helps only when it is sent early (its image comes at about the delay plus the
other host's own latency) and only for calls that were going to be slow (every other
hedge is a request paid for nothing). By default (`Hedge()`) the delay is worked out per
route from its recent answers: early on a host with a heavy tail, late (its p99) on one
without, and never so early that the route's share of calls would hedge more than the
budget pays for. Answers given up on because a hedge won count as "slower than that",
so the slow answers a hedge rescues do not vanish from the estimate.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from flux_sdk._base._errors import ConfigError

__all__ = ["Hedge", "Sample"]

# One answer at a route: its seconds, and whether it finished (False: given up on when a
# hedge won, so it would have taken longer than that).
Sample = tuple[float, bool]

_LONG = 0.1  # hedge once this share of the calls still running will take a fresh call's time more
_CAP = 0.99  # a route without a heavy tail is hedged at this quantile: its rare stalls


class Hedge:
    """When to send a second attempt to another host while the first is still running.

    ``Hedge()`` works the delay out per route from its recent answers (once it has
    ``min_samples``; before that, the next route's): the earliest time at which at least
    a tenth of the calls still running there will take as long again as a fresh call
    on the next route, or the route's p99 if that comes first, but never earlier than
    the route's share of calls can afford at ``max_extra``. ``Hedge(delay)`` waits a
    fixed number of seconds; ``Hedge(percentile=p)`` that percentile of the route's
    recent latencies. The first image wins and the other attempt is cancelled (on the
    host too, for a queue job). Hedges are paid from a sack that gains ``max_extra`` of
    a token per call and holds at most ``burst``: at most ``max_extra x calls + burst``
    extra requests, so hedging cannot double the bill.
    """

    def __init__(
        self,
        delay: float | None = None,
        *,
        percentile: float | None = None,
        max_extra: float = 0.1,
        min_samples: int = 10,
        burst: float = 5.0,
    ) -> None:
        if delay is not None and percentile is not None:
            raise ConfigError("Hedge takes a delay in seconds or a percentile, not both")
        if delay is not None and (isinstance(delay, bool) or not 0 <= delay < math.inf):
            raise ConfigError(f"a hedge delay must be a finite number of seconds (got {delay!r})")
        if percentile is not None and not 0 < percentile < 100:
            raise ConfigError(f"a hedge percentile is between 0 and 100 (got {percentile!r})")
        if isinstance(max_extra, bool) or not 0 < max_extra <= 1:
            raise ConfigError(f"max_extra must be above 0 and at most 1 (got {max_extra!r})")
        if isinstance(min_samples, bool) or not isinstance(min_samples, int) or min_samples < 2:
            raise ConfigError(f"min_samples must be a whole number >= 2 (got {min_samples!r})")
        if isinstance(burst, bool) or not 1 <= burst < math.inf:
            raise ConfigError(f"burst must be a number of hedges >= 1 (got {burst!r})")
        self.delay = delay
        self.percentile = percentile
        self.max_extra = float(max_extra)
        self.min_samples = min_samples
        self.burst = float(burst)
        self._tokens = self.burst

    def on_call(self) -> None:
        self._tokens = min(self.burst, self._tokens + self.max_extra)

    def can_spend(self) -> bool:
        return self._tokens >= 1.0

    def try_spend(self) -> bool:
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True

    def refund(self) -> None:
        self._tokens = min(self.burst, self._tokens + 1.0)

    def delay_for(
        self,
        samples: Sequence[Sample],
        backup: Sequence[Sample] = (),
        share: float = 1.0,
    ) -> float | None:
        """Seconds to wait before hedging a call to a route with these recent
        ``samples``, when the hedge would go to a route with ``backup``'s and this route
        takes ``share`` of the calls; None: do not hedge (too little known yet)."""
        if self.delay is not None:
            return self.delay
        if len(samples) < self.min_samples:
            if len(backup) < self.min_samples:
                return None
            samples = backup  # a route not yet timed: the next route's answers
        ordered = sorted(samples)
        if self.percentile is not None:
            import statistics  # loaded by the first hedge that needs its quantiles

            cuts = statistics.quantiles([s for s, _ in ordered], n=100, method="inclusive")
            return cuts[max(0, min(98, round(self.percentile) - 1))]
        fresh = _median(backup if len(backup) >= self.min_samples else ordered)
        n = len(ordered)
        cap = ordered[min(n - 1, math.ceil(_CAP * n) - 1)][0]
        delay = min(cap, _tail_start(ordered, fresh))
        if share > self.max_extra:  # hedge at most max_extra / share of this route's calls
            floor = ordered[min(n - 1, math.ceil((1 - self.max_extra / share) * n) - 1)][0]
            delay = max(delay, floor)
        return delay

    def __repr__(self) -> str:
        if self.delay is not None:
            how = f"delay={self.delay!r}, "
        elif self.percentile is not None:
            how = f"percentile={self.percentile}, "
        else:
            how = ""
        return f"Hedge({how}max_extra={self.max_extra}, burst={self.burst:g})"


def _median(ordered: Sequence[Sample]) -> float:
    values = sorted(s for s, _ in ordered)
    return values[len(values) // 2]


def _tail_start(ordered: Sequence[Sample], fresh: float) -> float:
    """The earliest answer time ``t`` at which at least `_LONG` of the calls still running
    (at least two of them) go on past ``t + fresh``, counting an answer given up on as
    going on; infinity if there is none (no heavy tail)."""
    n = len(ordered)
    given_up = [0] * (n + 1)  # given_up[i]: answers given up on among the first i
    for i, (_, done) in enumerate(ordered):
        given_up[i + 1] = given_up[i] + (not done)
    past = 0  # the first index past t + fresh
    for i, (t, _) in enumerate(ordered[:-1]):
        while past < n and ordered[past][0] <= t + fresh:
            past += 1
        running = n - 1 - i
        long = (n - past) + (given_up[past] - given_up[i + 1])
        if long >= 2 and long >= _LONG * running:
            return t
    return math.inf
