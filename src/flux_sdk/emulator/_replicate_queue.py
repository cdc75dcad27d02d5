"""The emulated Replicate predictions of one app, and how each moves through its states.

A prediction advances one state per status poll, not per second, so a test sees the
whole life of a job (``starting``, ``processing``, then its outcome) without sleeping.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Literal

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

    @property
    def status(self) -> str:
        """The state after ``polls`` polls (the create answer is state 0)."""
        if self.canceled:
            return "canceled"
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

    ``predictions`` (by id) lets a test check what happened: ``polls``,
    ``cancel_requests``, ``status``.
    """

    def __init__(
        self,
        *,
        starting: int = 1,
        processing: int = 1,
        outcome: Outcome = "succeeded",
        error: str | None = None,
    ) -> None:
        for name, value in (("starting", starting), ("processing", processing)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a whole number of polls >= 0, got {value!r}")
        if outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {', '.join(OUTCOMES)}, got {outcome!r}")
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
