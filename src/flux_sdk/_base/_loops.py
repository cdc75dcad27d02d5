"""Which event loop is running: the one place flux_sdk tells asyncio from trio."""

from __future__ import annotations

import sys
import weakref
from collections.abc import Callable

from ._errors import ConfigError

__all__ = ["LoopBinding", "current_loop", "running_trio"]


def running_trio() -> bool:
    """Whether this code runs inside trio (which need not be imported at all)."""
    trio = sys.modules.get("trio")
    if trio is None:
        return False
    try:
        trio.lowlevel.current_task()
    except RuntimeError:
        return False
    return True


def current_loop() -> object:
    """The event loop running this task: asyncio's loop object, or trio's run token."""
    import asyncio

    try:
        return asyncio.get_running_loop()
    except RuntimeError:  # not asyncio: anyio supports only trio besides
        import trio

        return trio.lowlevel.current_trio_token()


class LoopBinding:
    """Binds a client to the event loop of its first call and refuses any other.

    Its connections, limits and running calls belong to that loop: used from a second
    ``asyncio.run``, another thread's loop or trio, they would fail with RuntimeErrors
    from deep inside asyncio, or hang.
    """

    def __init__(self) -> None:
        self._loop: Callable[[], object | None] | None = None

    def check(self) -> None:
        current = current_loop()
        if self._loop is None:
            self._loop = _weak(current)
        elif self._loop() is not current:
            raise ConfigError(
                "this FluxClient was first used in another event loop (each asyncio.run(), "
                "thread or trio.run has its own), and its connections belong to that loop; "
                "create one FluxClient inside each event loop, e.g. with "
                "'async with FluxClient(...) as client:' in the coroutine you run"
            )


def _weak(loop: object) -> Callable[[], object | None]:
    """A reference to ``loop`` that does not keep a finished loop alive."""
    try:
        return weakref.ref(loop)
    except TypeError:  # no weak references to this type: hold it
        return lambda: loop
