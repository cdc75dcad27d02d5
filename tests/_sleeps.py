"""The injected sleep the retry tests hand to `Retry(sleep=...)`: it records each delay
asked for and returns at the next checkpoint, so no test waits out a backoff."""

from __future__ import annotations

import anyio.lowlevel

__all__ = ["Sleeps"]


class Sleeps:
    """Records each delay and returns at once."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        await anyio.lowlevel.checkpoint()
