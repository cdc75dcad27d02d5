"""The emulated Replicate predictions of one app, and how each moves through its states.

A prediction advances one state per status poll, not per second, so a test sees the
whole life of a job (``starting``, ``processing``, then its outcome) without sleeping.
A ``Prefer: wait`` create is held as Replicate holds it: until the prediction ends
(``run_seconds`` after its create) or the asked seconds pass, whichever is first.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

import anyio

__all__ = ["OUTCOMES", "TERMINAL", "Prediction", "ReplicateQueue"]

Outcome = Literal["succeeded", "failed", "canceled", "aborted"]
OUTCOMES: tuple[Outcome, ...] = ("succeeded", "failed", "canceled", "aborted")
TERMINAL = frozenset(OUTCOMES)
NSFW_ERROR = (
    "All generated images contained NSFW content. Try running it again with a different prompt."
)


@dataclass
class Prediction:
    """One prediction: its input, the states it will show, and where it is."""

    id: str
    input: dict[str, Any]
    starting: int
    processing: int
    outcome: Outcome
    error: str | None
    polls: int = 0
    cancel_requests: int = 0
    canceled: bool = False
    finished: bool = False  # it ran to its end while a Prefer: wait create was held

    @property
    def status(self) -> str:
        """The state after ``polls`` polls (the create answer is state 0)."""
        if self.canceled:
            return "canceled"
        if self.finished:
            return self.outcome
        if self.polls < self.starting:
            return "starting"
        if self.polls < self.starting + self.processing:
            return "processing"
        return self.outcome


class ReplicateQueue:
    """How emulated predictions move, and the predictions made so far.

    A prediction is answered ``starting`` for the create and the next ``starting - 1``
    polls, then ``processing`` for ``processing`` polls, then ``outcome`` for good
    (``failed`` with ``error``, by default the model's NSFW message). With
    ``starting=0`` and ``processing=0`` the create itself answers the outcome, as a
    ``Prefer: wait`` create does when the model finishes in time. A cancel of a
    prediction still running makes it ``canceled``; of an ended one changes nothing.

    A create with ``Prefer: wait=N`` (bare ``wait``: 60) is held while the prediction
    runs: it ends ``run_seconds`` after its create (0 by default, a fast model), so a
    wait that long answers the outcome with its output, as Replicate's does; a shorter
    one is answered after N seconds with the state the create would have had. None
    ignores the header (every prediction moves by polls alone). ``sleep`` is how the
    emulator waits (tests pass one that only records the seconds).

    ``predictions`` (by id) lets a test check what happened: ``polls``,
    ``cancel_requests``, ``status``, ``finished`` (it ended while a create was held).
    """

    def __init__(
        self,
        *,
        starting: int = 1,
        processing: int = 1,
        outcome: Outcome = "succeeded",
        error: str | None = None,
        run_seconds: float | None = 0.0,
        sleep: Callable[[float], Awaitable[None]] | None = None,
    ) -> None:
        for name, value in (("starting", starting), ("processing", processing)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a whole number of polls >= 0, got {value!r}")
        if outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {', '.join(OUTCOMES)}, got {outcome!r}")
        if run_seconds is not None and (
            isinstance(run_seconds, bool)
            or not isinstance(run_seconds, (int, float))
            or not 0 <= run_seconds < math.inf
        ):
            raise ValueError(f"run_seconds must be seconds >= 0 or None, got {run_seconds!r}")
        self.run_seconds = None if run_seconds is None else float(run_seconds)
        self._sleep = anyio.sleep if sleep is None else sleep
        self.starting = starting
        self.processing = processing
        self.outcome: Outcome = outcome
        self.error = error if error is not None else (NSFW_ERROR if outcome == "failed" else None)
        self.predictions: dict[str, Prediction] = {}
        self._lock = threading.Lock()  # tests read it from their own thread

    def create(self, input: dict[str, Any]) -> Prediction:
        with self._lock:
            pid = f"emu{len(self.predictions) + 1:023d}"
            prediction = Prediction(
                pid, input, self.starting, self.processing, self.outcome, self.error
            )
            self.predictions[pid] = prediction
            return prediction

    async def hold(self, prediction: Prediction, seconds: float) -> None:
        """Hold a ``Prefer: wait`` create up to ``seconds``: until ``prediction`` ends."""
        if self.run_seconds is None or prediction.status in TERMINAL:
            return
        if self.run_seconds > seconds:
            await self._sleep(seconds)
            return
        await self._sleep(self.run_seconds)
        with self._lock:
            prediction.finished = True

    def poll(self, pid: str) -> Prediction | None:
        """The prediction ``pid`` one state further on, or None if there is none."""
        with self._lock:
            prediction = self.predictions.get(pid)
            if prediction is not None:
                prediction.polls += 1
            return prediction

    def cancel(self, pid: str) -> Prediction | None:
        with self._lock:
            prediction = self.predictions.get(pid)
            if prediction is not None:
                prediction.cancel_requests += 1
                if prediction.status not in TERMINAL:
                    prediction.canceled = True
            return prediction

    def get(self, pid: str) -> Prediction | None:
        with self._lock:
            return self.predictions.get(pid)
