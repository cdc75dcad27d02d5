"""`Slots`: a first-come, first-served semaphore whose size can change at any time.

anyio's `Semaphore` has a fixed size; `AdaptiveLimit` moves its limit with every window,
so it keeps its slots here: a count of those taken and a line of waiters, each woken
(its slot taken on its behalf) as soon as one is free under the size of the moment.
Nothing polls, and a smaller size takes no slot back: it only stops handing them out.
"""

from __future__ import annotations

from collections import deque

import anyio
import anyio.lowlevel

__all__ = ["Slots"]


class Slots:
    """``size`` slots, taken with `acquire` and given back with `release`."""

    def __init__(self, size: int) -> None:
        self._size = size
        self.in_flight = 0  # slots taken
        self._waiters: deque[anyio.Event] = deque()

    @property
    def size(self) -> int:
        return self._size

    def resize(self, size: int) -> None:
        """Set the size; waiters take what is now free."""
        self._size = size
        self._wake()

    async def acquire(self) -> None:
        """Wait for a slot (first come, first served), without polling."""
        if not self._waiters and self.in_flight < self._size:
            await anyio.lowlevel.checkpoint_if_cancelled()
            self.in_flight += 1
            # As anyio's Semaphore does: let the other tasks started with this one take
            # their slots too before any of them goes on to its I/O.
            await anyio.lowlevel.cancel_shielded_checkpoint()
            return
        turn = anyio.Event()
        self._waiters.append(turn)
        try:
            await turn.wait()
        except BaseException:
            if turn.is_set():  # a slot was handed over as we left: pass it on
                self.release()
            else:
                self._waiters.remove(turn)
            raise

    def release(self) -> None:
        self.in_flight -= 1
        self._wake()

    def _wake(self) -> None:
        """Hand free slots to the waiters in order (the slot is taken on their behalf)."""
        while self._waiters and self.in_flight < self._size:
            self.in_flight += 1
            self._waiters.popleft().set()
