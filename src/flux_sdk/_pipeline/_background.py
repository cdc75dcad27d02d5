"""`Background`: work a call hands off so its caller need not wait, owned by the client.

A hedged call returns the winner's image at once; the loser's queue job is cancelled on
its host here instead (bounded by the step runner's own timeout). The work runs in a task
group the client opens in ``async with FluxClient(...)`` and awaits in ``aclose()``, so
nothing outlives the client; without ``async with`` there is no group, and the caller
runs the work itself, as before.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from anyio.abc import TaskGroup

__all__ = ["Background"]

_log = logging.getLogger("flux_sdk")


class Background:
    """The client's task group for handed-off work (see the module docstring)."""

    def __init__(self) -> None:
        self._group: TaskGroup | None = None
        self.pending = 0

    async def open(self) -> None:
        if self._group is None:
            group = anyio.create_task_group()
            await group.__aenter__()
            self._group = group

    async def close(self) -> None:
        """Wait for the work handed off (each piece bounded), then close the group."""
        group, self._group = self._group, None
        if group is not None:  # exited directly: its scope must be the innermost one
            await group.__aexit__(None, None, None)

    def spawn(self, work: Callable[..., Awaitable[Any]], *args: Any) -> bool:
        """Run ``work(*args)`` in the background: False when there is no group (the
        caller then runs it itself)."""
        if self._group is None:
            return False
        self.pending += 1
        self._group.start_soon(self._guarded, work, args)
        return True

    async def _guarded(self, work: Callable[..., Awaitable[Any]], args: tuple[Any, ...]) -> None:
        try:
            await work(*args)
        except Exception:
            _log.exception("flux_sdk background work failed")
        finally:
            self.pending -= 1
