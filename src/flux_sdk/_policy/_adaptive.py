"""`AdaptiveLimit`: a concurrency limit that finds how much the host can take.

A fixed limit is a guess: too low and a big host idles, too high and a small one
answers 429. This one learns the number from what the host does, the way TCP Vegas and
Netflix's concurrency-limits do, in its own small form:

- **Slow start.** While the host keeps up, every answer received with all slots busy
  (all but an eighth: see `_nearly`) adds one slot, so the limit doubles each round trip;
  after half a round trip of that, and until a first 429, two (it triples: `_speed_up`).
  It pauses while the latest answers' moving mean latency is over 1.2x the base (see
  `_keeping_up`), and ends at the first window over 1.2x, with the limit at what the
  host is serving then, plus a fifth (see `_overshot`).
- **Latency guard.** Answers are grouped in windows of about one limit's worth. The
  lowest window mean is the host's latency with nothing queued (a Vegas "base RTT"); a
  window more than 20% above it means requests have started to queue at the host, so
  the limit stops growing, and more than 50% above it cuts the limit by ``backoff``,
  though not below ``backoff`` times the highest limit whose latency was normal: a
  latency that stays high below that is not this limit's doing (a busy client machine,
  a host slow for everyone), and cutting further would only lose throughput.
- **Loss.** A 429 or 503 means the host's queue is full: the limit drops at once to
  ``backoff`` times what is in flight (before a first window, to half what the host
  holds), at most once per round trip; further refusals in that round trip only keep
  the limit below what is in flight, so a refusal's freed slot is not handed straight
  back, and for `_PLATEAU` windows it grows to one below what was refused at most.
- **Additive increase.** Otherwise, once slow start is over, each full window adds one
  slot (the AIMD of TCP's congestion avoidance). If slow start ended on latency alone,
  with no 429 since, a full window of normal latency starts it again.

Only a ``"generate"`` request's time is taken as a latency sample: a queue host's
submit or poll says nothing of the model's speed. The sample is the host's time, from
when the request was written to when its answer began, where the connection records it
(see `AdaptiveLimit._latency`). A queue job holds its slot from its submit until its
flow ends (see `_hold`) and counts as one answer, untimed, when it ends with its image;
its polls count for nothing.
"""

from __future__ import annotations

import builtins  # the class's own min and max arguments shadow the builtins
import functools
import math
import time
from collections.abc import Callable

import httpx

from flux_sdk._base._errors import ConfigError
from flux_sdk._base._options import check_callable, check_positive_int
from flux_sdk._pipeline._call import Call
from flux_sdk._pipeline._middleware import AttemptNext
from flux_sdk._transport._timing import HOST_TIME

from ._hold import holding, keep
from ._limits import ConcurrencyLimit
from ._slots import Slots

__all__ = ["DEFAULT_CEILING", "DEFAULT_START", "AdaptiveLimit"]

DEFAULT_CEILING = 256
DEFAULT_START = 16
_MIN_WINDOW = 8  # samples: fewer make a window's mean too noisy to judge
_HOLD = 1.2  # window latency over the base latency above which the limit stops growing
_CUT = 1.5  # ... above which it is cut
_DRIFT = 1 / 256  # how fast the base latency follows a host that became slower for good
_HEADROOM = 1.2  # the limit slow start ends at, over what the host serves (`_overshot`)
_RECENT = 1 / 8  # the weight of each answer in the latest latencies' moving mean
_GATE = 1.2  # their mean over the base latency above which slow start pauses
_FAST = 2  # slots an answer adds in slow start once it has kept up a while (`_speed_up`)
_FAST_AFTER = 0.5  # that while, in base latencies
_PLATEAU = 8  # windows after a 429 that the limit stays below what was refused (`_grow`)
_REFUSED = frozenset({429, 503})


def _nearly(limit: int) -> int:
    """In flight at an answer for the limit to count as used: all but an eighth. Between
    an answer and the request taking its slot the client does its own work, so at
    hundreds of answers a second a batch using every slot shows one or two free."""
    return limit - limit // 8


class AdaptiveLimit(ConcurrencyLimit):
    """A concurrency limit that adapts between ``min`` and ``max`` (see the module doc).

    The default of `FluxClient` when no ``max_concurrency`` is given; pass one to set
    your own ceiling and start, ``max_concurrency=AdaptiveLimit(max=64)``, or to share
    one limit between clients. ``limit`` is the current value (it can be set, within
    the bounds), ``ceiling`` the most it may reach, ``in_flight`` the requests (and queue
    jobs) holding a slot. ``clock`` (seconds, ``time.monotonic`` by default) times the requests.
    """

    def __init__(
        self,
        max: int = DEFAULT_CEILING,
        *,
        start: int | None = None,
        min: int = 1,
        backoff: float = 0.9,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.max = check_positive_int(max, ConfigError, "AdaptiveLimit max")
        self.min = check_positive_int(min, ConfigError, "AdaptiveLimit min")
        if self.min > self.max:
            raise ConfigError(f"AdaptiveLimit min={min} is above max={max}: lower min")
        if start is None:
            start = builtins.min(builtins.max(DEFAULT_START, self.min), self.max)
        start = check_positive_int(start, ConfigError, "AdaptiveLimit start")
        if not self.min <= start <= self.max:
            raise ConfigError(
                f"AdaptiveLimit start must be from min={self.min} to max={self.max} (got {start})"
            )
        if (
            isinstance(backoff, bool)
            or not isinstance(backoff, (int, float))
            or not 0.1 <= backoff < 1
        ):
            raise ConfigError(
                f"AdaptiveLimit backoff must be a number from 0.1 to below 1 (got {backoff!r})"
            )
        if clock is not None:
            check_callable(clock, ConfigError, "AdaptiveLimit clock")
        self.backoff = float(backoff)
        self._clock = clock if clock is not None else time.monotonic
        self._value = float(start)
        self._slots = Slots(start)
        self._slow_start = True
        self._base: float | None = None  # lowest window latency: the host unloaded
        self._rtt: float | None = None  # latest window latency
        self._last_cut = -math.inf
        self._epoch = 0
        # The highest limit whose window's latency was normal: a latency cut stops just
        # below it (latency high below it is not this limit's doing); a 429 lowers it.
        self._good = 0.0
        # The window being filled: answers, those timed, their total time, whether every
        # slot was busy at some answer, and the limit when it began (its length).
        self._count = 0
        self._timed = 0
        self._total = 0.0
        self._saturated = False
        self._window_size = start
        self._recent: float | None = None  # moving mean of the latest latencies
        # Slow start may start again once latency is back to normal, until a refusal
        # shows where the host's own limit is (see `_overshot`).
        self._resumable = False
        self._step = 1  # slots an answer adds in slow start, and since when it kept up
        self._kept_up_since: float | None = None  # (see `_speed_up`)
        self._refused = False  # a 429 or 503 came
        self._refused_at = math.inf  # in flight at the latest 429s, and windows since
        self._since_refused = 0

    # The slots

    @property
    def limit(self) -> int:
        """How many requests may be in flight now."""
        return int(self._value)

    @limit.setter
    def limit(self, value: int) -> None:
        value = check_positive_int(value, ConfigError, "AdaptiveLimit limit")
        self._set(float(value))

    @property
    def ceiling(self) -> int:
        return self.max

    @property
    def in_flight(self) -> int:
        return self._slots.in_flight

    def __repr__(self) -> str:
        return f"AdaptiveLimit(max={self.max}, limit={self.limit}, in_flight={self.in_flight})"

    async def acquire(self) -> None:
        """Wait for a slot (first come, first served), without polling."""
        await self._slots.acquire()

    def release(self) -> None:
        self._slots.release()

    def _set(self, value: float) -> None:
        self._value = builtins.min(float(self.max), builtins.max(float(self.min), value))
        self._slots.resize(int(self._value))

    # What the answers say

    @property
    def epoch(self) -> int:
        """Counts the cuts: an answer to a request sent before the latest cut says
        nothing of the limit now (pass the epoch it was sent in to `on_answer`)."""
        return self._epoch

    def on_refused(self) -> None:
        """A 429 or 503: the host's queue is full (call before the slot is released)."""
        self._refused = True
        now = self._clock()
        rtt = self._rtt if self._rtt is not None else self._recent
        burst = now - self._last_cut < (rtt if rtt is not None else math.inf)
        held = self.in_flight - 1  # what the host holds, this request refused
        self._refused_at = builtins.min(self._refused_at, held + 1) if burst else held + 1
        self._since_refused = 0
        if self._base is None:
            # Refused before one window was measured: the start was too high, and the
            # latencies seen so far include the host's queue. Half what the host holds,
            # and slow start again from there (with a latency free of that queue) once
            # the answers sent before are in. Halving at each refusal of a burst took a
            # host of 12 replicas, 20 ms away, down to one slot (capacity_sim.py).
            self._set(builtins.min(self._value, builtins.max(held, 1) * 0.5))
            if not burst:
                self._last_cut = now
                self._cut()
            return
        self._slow_start = self._resumable = False
        if burst:  # the same round trip: only keep the freed slot from going straight back
            self._set(builtins.min(self._value, held))
            return
        self._last_cut = now
        self._set(builtins.min(self._value, self.in_flight) * self.backoff)
        self._good = builtins.min(self._good, self._value)
        self._cut()

    def _grow(self, slots: float) -> None:
        """Add slots, for `_PLATEAU` windows after a 429 not up to what was refused: a
        request back from its ``Retry-After`` just as the limit climbed back there was
        the one too many at each try, and lost (capacity_sim.py, 8 replicas)."""
        value = self._value + slots
        if self._since_refused < _PLATEAU:
            value = builtins.min(value, builtins.max(self._value, self._refused_at - 1))
        self._set(value)

    def _cut(self) -> None:
        self._step, self._kept_up_since = 1, None
        self._epoch += 1
        self._new_window()

    def on_answer(self, latency: float | None, epoch: int | None = None) -> None:
        """An answer the host served, with its latency if it is a model's time (call
        before the slot is released); ``epoch`` is `epoch` when it was sent."""
        if epoch is not None and epoch != self._epoch:
            return  # sent before the latest cut
        saturated = self.in_flight >= _nearly(int(self._value))
        if latency is not None:
            recent = self._recent
            self._recent = latency if recent is None else recent + (latency - recent) * _RECENT
        if self._slow_start and saturated and self._keeping_up():
            self._speed_up()
            self._grow(self._step)
        self._count += 1
        self._saturated = self._saturated or saturated
        if latency is not None:
            self._timed += 1
            self._total += latency
        if self._count >= builtins.max(_MIN_WINDOW, self._window_size):
            self._close_window()

    def _new_window(self) -> None:
        self._count = 0
        self._timed = 0
        self._total = 0.0
        self._saturated = False
        self._window_size = int(self._value)

    def _close_window(self) -> None:
        self._since_refused += 1
        ratio = 1.0
        if self._timed:
            rtt = self._total / self._timed
            self._rtt = rtt
            if self._base is None or rtt < self._base:
                self._base = rtt
            else:
                self._base += (rtt - self._base) * _DRIFT
            ratio = rtt / self._base if self._base > 0 else 1.0
        if ratio > _HOLD and self._slow_start:
            self._overshot()
            return
        if ratio > _CUT:
            self._slow_start = False
            floor = self._good * self.backoff
            if self._value > floor:
                self._set(builtins.max(floor, self._value * self.backoff))
                self._cut()
                return
        elif ratio <= _HOLD:
            self._good = builtins.max(self._good, float(self._window_size))
            if self._slow_start and not self._saturated:
                self._step, self._kept_up_since = 1, None
        if ratio > _HOLD:
            self._slow_start = False
        elif self._saturated and not self._slow_start:
            self._slow_start = self._resumable
            self._grow(1)
        self._new_window()

    def _overshot(self) -> None:
        """Slow start's window came back slower than the base: requests now wait, at the
        host or inside a busy client. About in flight x base / latest latency are being
        served (Little's law); slow start ends at that with `_HEADROOM` (the host full,
        a short queue, no line in the client to reach the host at once as 429s), and
        goes on once a window's latency is normal again, unless a 429 came since. A
        window that never filled the limit did not make the host queue: the limit stays.
        """
        self._slow_start = False
        self._resumable = True
        base, recent = self._base, self._recent
        if self._saturated and base and recent and recent > base:
            served = self.in_flight * base / recent
            self._set(builtins.min(self._value, builtins.max(float(self.min), _HEADROOM * served)))
        self._cut()

    def _speed_up(self) -> None:
        """Slow start's answers kept up with the limit used: after half a base latency of
        that, each adds `_FAST` slots, so the limit triples a round trip. Doubling spent
        12% of a 25-round batch at 192 replicas, 7% at 96, with few replicas busy
        (capacity.py). Never after a 429 (a small host is refused by the start); a cut
        or a window that did not use the limit starts the half round trip again. The
        price, a deeper overshoot before a window shows the queue, is paid in retried
        429s; four slots bought 1% more at 192 for thrice the 429s at 48 (capacity_sim)."""
        now = self._clock()
        base = self._base if self._base is not None else self._recent
        if base is None or self._refused:
            return
        if self._kept_up_since is None:
            self._kept_up_since = now
        elif now - self._kept_up_since >= base * _FAST_AFTER:
            self._step = _FAST

    def _keeping_up(self) -> bool:
        """Whether the latest answers came about as fast as the base: slow start grows only
        then. A window is judged once it ends, a round trip late; meanwhile requests
        held up inside a busy client (their slot taken, not yet sent or not yet read)
        show at once in each answer's time, and growing then only lengthens that line,
        which reaches the host as one burst of 429s when the client frees up."""
        base, recent = self._base, self._recent
        return base is None or recent is None or recent <= _GATE * base

    def _latency(self, response: httpx.Response, start: float) -> float:
        """The host's time for a request: from when it was written to when its answer
        began, where the connection records it (`HOST_TIME`), else from when it took
        its slot.

        The slot's time also counts the client's own part (writing the request, a busy
        event loop, reading the body), which grows with the load on its CPU and the
        latency guard would read as the host queueing.
        """
        host_time = response.extensions.get(HOST_TIME)
        if host_time is not None:
            written, answered = host_time
            return float(answered - written)
        return self._clock() - start

    async def __call__(self, call: Call, call_next: AttemptNext) -> httpx.Response:
        if holding(call, self):  # a held job's poll or download: it says nothing here
            return await call_next(call)
        await self.acquire()
        kept = False
        try:
            call.concurrency = int(self._value)
            epoch = self._epoch
            start = self._clock()
            response = await call_next(call)
            status = response.status_code
            if status in _REFUSED:
                self.on_refused()
            elif 200 <= status < 300:
                kept = keep(call, self, response, functools.partial(self._job_ended, epoch))
                if not kept:
                    step = call.step
                    timed = step is None or step.kind == "generate"
                    self.on_answer(self._latency(response, start) if timed else None, epoch)
            else:  # a 5xx to a submit may have queued a job all the same
                kept = keep(call, self, response, functools.partial(self._job_ended, epoch))
            return response
        except Exception as exc:  # a submit whose answer was lost may still run there
            kept = keep(call, self, exc, functools.partial(self._job_ended, epoch))
            raise
        finally:
            if not kept:
                self.release()

    async def _job_ended(self, epoch: int, ok: bool) -> None:
        """A held queue job ended: one answer if it made its image (untimed: a job's
        time is mostly poll intervals), then its slot is free."""
        if ok:
            self.on_answer(None, epoch)
        self.release()
