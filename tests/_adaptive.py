"""Shared by the AdaptiveLimit tests: a hand-moved clock, answers at a steady or paced rate."""

from __future__ import annotations

from flux_sdk import AdaptiveLimit


class Tick:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def _steady(limit: AdaptiveLimit, answers: int, latency: float, busy: int = 0) -> None:
    """``answers`` answers after ``latency`` each, from a caller that keeps ``busy``
    requests in flight (every slot when 0), as a batch does."""
    for _ in range(answers):
        while limit.in_flight < (busy or limit.limit):
            await limit.acquire()
        limit.on_answer(latency)
        limit.release()
    while limit.in_flight:
        limit.release()


async def _paced(limit: AdaptiveLimit, tick: Tick, answers: int, latency: float) -> list[int]:
    """`_steady` with every slot busy and the clock moving as from a host: the answers of
    one round trip spread over ``latency``. Returns the limit after each answer."""
    seen = []
    for _ in range(answers):
        while limit.in_flight < limit.limit:
            await limit.acquire()
        tick.now += latency / limit.limit
        limit.on_answer(latency)
        limit.release()
        seen.append(limit.limit)
    while limit.in_flight:
        limit.release()
    return seen
