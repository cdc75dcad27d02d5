"""Queued jobs on the emulator: each moves one state per status poll, so tests never sleep.

A queue host (fal) keeps its jobs in the app's ``Jobs``; ``QueueTiming`` says how many
polls a job spends queued and running before it completes, or that it never completes
(to test a caller's deadline and the cancel it sends).
"""

from __future__ import annotations

import collections
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Job", "Jobs", "QueueTiming"]


@dataclass(frozen=True, slots=True)
class QueueTiming:
    """How a queued job moves: ``in_queue`` status polls answered "queued", then
    ``in_progress`` polls answered "running" (None: forever), then "completed"."""

    in_queue: int = 1
    in_progress: int | None = 1

    def __post_init__(self) -> None:
        for name in ("in_queue", "in_progress"):
            value = getattr(self, name)
            if value is None and name == "in_progress":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"QueueTiming.{name} must be an integer >= 0 (got {value!r})")

    def state(self, polls: int) -> str:
        """``"queued"``, ``"running"`` or ``"completed"`` as of the ``polls``-th poll."""
        if polls <= self.in_queue:
            return "queued"
        if self.in_progress is None or polls <= self.in_queue + self.in_progress:
            return "running"
        return "completed"


@dataclass
class Job:
    """One accepted request: what it asked for and how far it got."""

    id: str
    host: str
    app: str
    params: dict[str, Any]
    polls: int = 0
    cancelled: bool = False
    error: Any = None  # what the model would fail with, decided when the job was taken
    done: bool = field(default=False)


class Jobs:
    """The app's jobs by id, oldest dropped past ``limit`` (a test server runs for hours)."""

    def __init__(self, limit: int = 10_000) -> None:
        self.limit = limit
        self._jobs: collections.OrderedDict[str, Job] = collections.OrderedDict()
        self._count = 0
        self._lock = threading.Lock()

    def add(self, host: str, app: str, params: dict[str, Any], *, error: Any = None) -> Job:
        with self._lock:
            self._count += 1
            # A UUID's shape, as fal's request ids have, counted up so runs are repeatable.
            job = Job(str(uuid.UUID(int=self._count)), host, app, params, error=error)
            self._jobs[job.id] = job
            while len(self._jobs) > self.limit:
                self._jobs.popitem(last=False)
            return job

    def get(self, host: str, job_id: str) -> Job | None:
        with self._lock:
            job = self._jobs.get(job_id)
        return job if job is not None and job.host == host else None

    def poll(self, job: Job, timing: QueueTiming) -> str:
        """Count one status poll of ``job`` and return its state after it."""
        with self._lock:
            if job.done:
                return "completed"
            job.polls += 1
            state = "completed" if job.cancelled else timing.state(job.polls)
            job.done = state == "completed"
            return state

    def __len__(self) -> int:
        return len(self._jobs)
