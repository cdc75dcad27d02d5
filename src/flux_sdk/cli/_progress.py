"""Drawing a batch's progress on standard error, as a bar or as periodic lines."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO

from flux_sdk import BatchProgress

from ._console import write

__all__ = ["Progress", "duration", "rate", "render"]


class Progress:
    """Draws `BatchProgress`: a bar redrawn in place on a terminal, or a plain line
    every few seconds for logs (``mode`` is ``"bar"``, ``"lines"`` or ``"none"``).

    It never raises: it runs inside the batch, and a progress display that can no
    longer be written (a closed pipe, a full disk) must not stop the images. It stops
    drawing instead.
    """

    def __init__(
        self,
        stream: TextIO,
        mode: str,
        *,
        total: int = 0,
        clock: Callable[[], float] = time.monotonic,
        every: float | None = None,
    ) -> None:
        self.stream = stream
        self.mode = mode
        self.clock = clock
        self.every = every if every is not None else (0.1 if mode == "bar" else 5.0)
        self.last = BatchProgress(total=total)
        self.broken = False
        self._shown = -float("inf")
        self._drawn: BatchProgress | None = None
        self._open_line = False

    def __call__(self, progress: BatchProgress) -> None:
        self.last = progress
        now = self.clock()
        if progress.finished < progress.total and now - self._shown < self.every:
            return
        self._shown = now
        self._draw(progress)

    def close(self) -> None:
        """Draw the final counts if the last drawing is behind them (it is throttled),
        then end the bar's line, so that what follows agrees with it and starts afresh."""
        if self._drawn != self.last and self.last.total:
            self._draw(self.last)
        if self._open_line:
            self._write("\n")
            self._open_line = False

    def _draw(self, progress: BatchProgress) -> None:
        if self.mode == "bar":
            self._open_line = self._write(f"\r{render(progress)}\x1b[K")
        elif self.mode == "lines":
            self._write(render(progress, bar=False) + "\n")
        self._drawn = progress

    def _write(self, text: str) -> bool:
        if self.broken:
            return False
        self.broken = not write(self.stream, text)
        return not self.broken


def render(progress: BatchProgress, *, bar: bool = True, width: int = 24) -> str:
    """One line: ``[#####-----] 512/1000  2 failed  3.4 img/s  ETA 2m31s``."""
    p = progress
    parts = [f"{p.finished}/{p.total}"]
    if bar:
        filled = width * p.finished // p.total if p.total else width
        parts.insert(0, "[" + "#" * filled + "-" * (width - filled) + "]")
    if p.skipped:
        parts.append(f"{p.skipped} skipped")
    parts.append(f"{p.failed} failed")
    parts.append(f"{rate(p):.1f} img/s")
    eta = p.eta
    parts.append("ETA " + ("?" if eta is None else duration(eta)))
    return "  ".join(parts)


def rate(progress: BatchProgress) -> float:
    """Images generated per second: those already there from an earlier run cost no
    time, and counting them would promise a pace the rest cannot keep."""
    return progress.done / progress.elapsed if progress.elapsed > 0 else 0.0


def duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"
