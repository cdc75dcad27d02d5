"""Capacity: a host with limits, so clients can be measured against a service that fills up.

A host with a ``Capacity`` has a number of replicas, each serving one request at a time
for a service time drawn from a seeded distribution. A request that finds every replica
busy waits in a bounded FIFO queue; beyond the queue it is refused with the host's own
429 and ``Retry-After``, or (``overflow="queue"``) waits anyway, so latency grows. Its
``Load`` counts what happened, for assertions and for plots of concurrency over time.
"""

from __future__ import annotations

import collections
import dataclasses
import heapq
import itertools
import json
import math
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Literal, NamedTuple

from flux_sdk.emulator._asgi import Receive, Send, send_bytes
from flux_sdk.emulator._faults import Canned, Fault, FaultPlan, seconds
from flux_sdk.emulator._faults import _unless_client_leaves as unless_client_leaves

if TYPE_CHECKING:
    import anyio

    from flux_sdk.emulator._host import Host

__all__ = ["TIMELINE_SAMPLES", "Capacity", "JobSlot", "Load", "Sample", "ServiceTimes", "loads"]

# The timeline keeps the latest samples only, so a server left running cannot fill memory.
TIMELINE_SAMPLES = 100_000


@dataclasses.dataclass(frozen=True)
class Capacity:
    """How much one host can serve at once, and what happens to the rest.

    ``replicas`` requests are served at a time; each takes a service time whose median is
    ``median`` seconds and whose spread is the sigma of a lognormal around it (0: every
    request takes exactly ``median``). A fraction ``tail`` of requests takes
    ``tail_factor`` times longer, the slow minority hedging is meant for. The times come
    from ``random.Random(seed)`` in the order requests arrive, so a run can be replayed.

    When every replica is busy a request waits in a FIFO queue of ``queue`` places.
    Beyond it, ``overflow="429"`` refuses it at once with the host's 429 and
    ``Retry-After: retry_after``; ``overflow="queue"`` lets it wait anyway, so latency
    grows with the load instead. A client that disconnects while queued leaves the
    queue; one that disconnects in service does not stop its replica, as a model does
    not stop computing for a closed connection. A replica is busy for the service time
    only: the answer is sent (and any fault of a ``FaultPlan`` drawn) after it is freed.

    ``sleep`` and ``clock`` are the time source (``anyio.sleep`` and ``time.monotonic``
    when None): a test can pass its own to run without real waiting.
    """

    replicas: int = 4
    median: float = 1.0
    spread: float = 0.0
    queue: int = 0
    overflow: Literal["429", "queue"] = "429"
    retry_after: float = 1.0
    tail: float = 0.0
    tail_factor: float = 10.0
    seed: int = 0
    sleep: Callable[[float], Awaitable[None]] | None = dataclasses.field(
        default=None, repr=False, compare=False
    )
    clock: Callable[[], float] | None = dataclasses.field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not _whole(self.replicas) or self.replicas < 1:
            raise ValueError(f"replicas must be a whole number >= 1, got {self.replicas!r}")
        if not _whole(self.queue) or self.queue < 0:
            raise ValueError(f"queue must be a whole number >= 0, got {self.queue!r}")
        if not _whole(self.seed):
            raise ValueError(f"seed must be a whole number, got {self.seed!r}")
        for name in ("median", "spread", "retry_after"):
            value = getattr(self, name)
            if not _number(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if not _number(self.tail) or not 0 <= self.tail <= 1:
            raise ValueError(f"tail must be a probability from 0 to 1, got {self.tail!r}")
        if not _number(self.tail_factor) or self.tail_factor < 1:
            raise ValueError(f"tail_factor must be a finite number >= 1, got {self.tail_factor!r}")
        if self.overflow not in ("429", "queue"):
            raise ValueError(f"overflow must be '429' or 'queue', got {self.overflow!r}")


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


class ServiceTimes:
    """The service times of one host's requests, in arrival order (see ``Capacity``)."""

    def __init__(self, capacity: Capacity) -> None:
        self.capacity = capacity
        # Not for security: a seeded generator is the point, so runs can be replayed.
        self._random = random.Random(capacity.seed)  # noqa: S311

    def draw(self) -> float:
        """The next request's service time, in seconds."""
        c = self.capacity
        # Both draws every time, so the tail never shifts the sequence of the body.
        z = self._random.gauss(0.0, 1.0)
        slow = self._random.random() < c.tail
        body = c.median * math.exp(c.spread * z)
        return body * c.tail_factor if slow else body


@dataclasses.dataclass
class JobSlot:
    """A queue host's job on a replica: it starts when one is free and ends ``duration``
    later (both None while it waits); a cancel ends it early."""

    duration: float
    start: float | None = None
    end: float | None = None


class Sample(NamedTuple):
    """The state of one host's capacity just after a change, for plots."""

    time: float
    in_service: int
    queued: int


class Load:
    """One host's replicas and queue at work, with the counters benchmarks read.

    ``requests`` counts the requests that reached this host (refused ones too);
    ``in_service`` and ``queued`` are now, ``max_in_service`` and ``max_queued`` the
    most ever; ``refused`` counts the 429s for a full queue, ``served`` the requests
    whose service time ended, ``abandoned`` the clients that left while queued. Each change
    of ``in_service`` or ``queued`` appends a ``Sample`` to ``timeline`` (the latest
    ``TIMELINE_SAMPLES``) and calls ``on_change`` with it, if set.
    """

    def __init__(self, host: str, capacity: Capacity) -> None:
        self.host = host
        self.capacity = capacity
        self.requests = 0
        self.in_service = 0
        self.max_in_service = 0
        self.queued = 0
        self.max_queued = 0
        self.refused = 0
        self.served = 0
        self.abandoned = 0
        self.timeline: collections.deque[Sample] = collections.deque(maxlen=TIMELINE_SAMPLES)
        self.on_change: Callable[[Sample], None] | None = None
        self.service_times = ServiceTimes(capacity)
        self._clock = capacity.clock or time.monotonic
        self._waiting: collections.deque[anyio.Event] = collections.deque()
        # Jobs of a queue host: those on a replica by end time, those waiting for one.
        self._running: list[tuple[float, int, JobSlot]] = []
        self._job_queue: collections.deque[JobSlot] = collections.deque()
        self._order = itertools.count()
        self.jobs: dict[str, JobSlot] = {}
        # Carries Retry-After to the host's canned 429, the same answer a fault gives.
        self._rate_limit = FaultPlan(retry_after=capacity.retry_after)

    def __repr__(self) -> str:
        return (
            f"<Load {self.host}: {self.in_service}/{self.capacity.replicas} in service, "
            f"{self.queued} queued, {self.requests} requests, {self.refused} refused>"
        )

    async def serve(
        self,
        work: Callable[[], Awaitable[None]],
        host: Host,
        receive: Receive,
        send: Send,
        headers: Mapping[str, str],
    ) -> None:
        """Run ``work`` (the whole answer) on a replica, after queueing, or refuse it
        with the host's 429 (``headers`` are those every answer of the host carries)."""
        self.requests += 1
        duration = self.service_times.draw()
        if self.in_service < self.capacity.replicas and not self._waiting:
            self.in_service += 1
            self.max_in_service = max(self.max_in_service, self.in_service)
            self._changed()
        elif self.capacity.overflow == "429" and len(self._waiting) >= self.capacity.queue:
            self.refused += 1
            status, body, content_type, extra = self.overloaded(host)
            await send_bytes(send, status, body, content_type, {**headers, **extra})
            return
        elif not await self._wait_turn(receive):
            return  # the client left the queue: nobody is left to answer
        try:
            await self._sleep(duration)
        finally:
            self._release()
        # The replica is free once the model is done; sending the answer takes none.
        self.served += 1
        await work()

    def admit_job(self, job_id: str) -> JobSlot | None:
        """Take a queue host's job: on a free replica at once, else into the queue (its
        place held from now), or None when the queue is full (the submit gets a 429).

        The job holds its replica until it ends with time, not for any one request:
        its polls, result and downloads take none (``job_state``).
        """
        self._advance()
        self.requests += 1
        slot = JobSlot(self.service_times.draw())
        if self.in_service < self.capacity.replicas and not self._job_queue:
            self._start(slot, self._clock())
        elif self.capacity.overflow == "429" and len(self._job_queue) >= self.capacity.queue:
            self.refused += 1
            return None
        else:
            self._job_queue.append(slot)
            self._job_queue_changed()
        self.jobs[job_id] = slot
        return slot

    def job_state(self, job_id: str) -> str | None:
        """``"queued"``, ``"running"`` or ``"completed"`` now; None for a job not taken
        here (a host without this capacity when it was submitted)."""
        self._advance()
        slot = self.jobs.get(job_id)
        if slot is None:
            return None
        if slot.start is None:
            return "queued"
        assert slot.end is not None
        return "completed" if slot.end <= self._clock() else "running"

    def cancel_job(self, job_id: str) -> None:
        """End a job now: it leaves the queue, or frees its replica."""
        self._advance()
        slot = self.jobs.get(job_id)
        now = self._clock()
        if slot is None or (slot.end is not None and slot.end <= now):
            return
        if slot.start is None:
            self._job_queue.remove(slot)
            self._job_queue_changed()
            slot.start = slot.end = now
            return
        slot.end = now
        self._running = [(now, n, s) if s is slot else (e, n, s) for e, n, s in self._running]
        heapq.heapify(self._running)
        self._advance()

    def _start(self, slot: JobSlot, at: float) -> None:
        slot.start, slot.end = at, at + slot.duration
        heapq.heappush(self._running, (slot.end, next(self._order), slot))
        self.in_service += 1
        self.max_in_service = max(self.max_in_service, self.in_service)
        self._changed(at)

    def _advance(self) -> None:
        """Free the replicas of jobs ended by now; a waiting job starts when one ended."""
        now = self._clock()
        while self._running and self._running[0][0] <= now:
            ended, _, _ = heapq.heappop(self._running)
            self.served += 1
            self.in_service -= 1
            if self._job_queue:
                self._start(self._job_queue.popleft(), ended)
                self.queued = len(self._job_queue)
            else:
                self._changed(ended)

    def _job_queue_changed(self) -> None:
        self.queued = len(self._job_queue)
        self.max_queued = max(self.max_queued, self.queued)
        self._changed()

    def overloaded(self, host: Host) -> Canned:
        """The 429 for a full queue: the host's own, as its ``RATE_LIMIT`` fault sends."""
        canned = host.fault(Fault.RATE_LIMIT, self._rate_limit)
        if canned is not None and canned[0] == 429:
            return canned
        body = json.dumps({"error": "Too many requests: every replica is busy"}).encode()
        return 429, body, "application/json", {"retry-after": seconds(self.capacity.retry_after)}

    async def _sleep(self, duration: float) -> None:
        if self.capacity.sleep is not None:
            await self.capacity.sleep(duration)
        else:
            import anyio  # lazily: importing the emulator stays standard-library only

            await anyio.sleep(duration)

    async def _wait_turn(self, receive: Receive) -> bool:
        """Wait in the queue for a replica; False if the client left first."""
        import anyio

        turn = anyio.Event()
        self._waiting.append(turn)
        self._queue_changed()
        try:
            left = await unless_client_leaves(receive, turn.wait)
        except BaseException:
            self._leave(turn)
            raise
        if left:
            self.abandoned += 1
            self._leave(turn)
        return not left

    def _leave(self, turn: anyio.Event) -> None:
        if turn.is_set():  # handed a replica on the way out: pass it on
            self._release()
        else:
            self._waiting.remove(turn)
            self._queue_changed()

    def _release(self) -> None:
        """A replica is free: the first in the queue gets it, or it goes idle."""
        if self._waiting:
            turn = self._waiting.popleft()
            self.queued = len(self._waiting)
            turn.set()
        else:
            self.in_service -= 1
        self._changed()

    def _queue_changed(self) -> None:
        self.queued = len(self._waiting)
        self.max_queued = max(self.max_queued, self.queued)
        self._changed()

    def _changed(self, at: float | None = None) -> None:
        sample = Sample(self._clock() if at is None else at, self.in_service, self.queued)
        self.timeline.append(sample)
        if self.on_change is not None:
            self.on_change(sample)


def loads(
    capacity: Capacity | Mapping[str, Capacity] | None, hosts: Iterable[str]
) -> dict[str, Load]:
    """A ``Load`` per host with a capacity: every host for one ``Capacity``, or those a
    mapping names (a host it does not name has no limits)."""
    names = list(hosts)
    if capacity is None:
        return {}
    if isinstance(capacity, Capacity):
        return {name: Load(name, capacity) for name in names}
    if not isinstance(capacity, Mapping):
        raise ValueError(
            f"capacity must be a Capacity or a mapping of host name to Capacity, "
            f"got {type(capacity).__name__}"
        )
    unknown = [name for name in capacity if name not in names]
    if unknown:
        raise ValueError(
            f"capacity names no host of the emulator: {', '.join(map(repr, unknown))}; "
            f"its hosts are {', '.join(names)}"
        )
    for name, value in capacity.items():
        if not isinstance(value, Capacity):
            raise ValueError(f"capacity[{name!r}] must be a Capacity, got {type(value).__name__}")
    return {name: Load(name, value) for name, value in capacity.items()}
