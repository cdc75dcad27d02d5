"""AdaptiveLimit slots: which time an answer is judged by, waiters served in order or cancelled."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import httpx
import pytest

from flux_sdk import AdaptiveLimit, Call
from flux_sdk._transport._timing import HOST_TIME

from ._adaptive import Tick
from .test_middleware import OK_JSON

pytestmark = pytest.mark.anyio


def _timed_call() -> Call:
    call = Call.__new__(Call)  # only the fields AdaptiveLimit reads
    call.step = None
    call.concurrency = None
    return call


async def test_latency_is_the_hosts_time_from_the_write_to_the_answer() -> None:
    """Where the connection records the host's time (``HOST_TIME``), the time before the
    request was written (the client's own work) is not taken for the host queueing:
    only the host's part is judged. Here the slots are held for no time at all."""
    host_time = 0.1
    limit = AdaptiveLimit(max=1000, start=10, clock=Tick())  # never moves

    async def answer(call: Call) -> httpx.Response:
        response = httpx.Response(200, json=OK_JSON)
        response.extensions[HOST_TIME] = (100.0, 100.0 + host_time)
        return response

    async def answers(count: int) -> None:
        async with anyio.create_task_group() as group:
            for _ in range(count):
                group.start_soon(limit, _timed_call(), answer)

    await answers(10)  # a first window: the base is the host's 0.1 s
    grown = limit.limit
    host_time = 0.3  # the host three times slower: it queues
    for _ in range(3):
        await answers(grown)
    assert limit.limit < grown  # cut, though no slot was held for any time


async def test_without_the_hosts_time_the_slot_time_is_the_latency() -> None:
    """A connection that cannot tell (httpx's today) leaves ``HOST_TIME`` out: the time
    from taking the slot to the answer is judged instead."""
    tick = Tick()
    limit = AdaptiveLimit(max=1000, start=10, clock=tick)
    service = 0.1

    async def answer(call: Call) -> httpx.Response:
        tick.now += service  # one answer at a time: each holds its slot for ``service``
        return httpx.Response(200, json=OK_JSON)

    for _ in range(10):
        await limit(_timed_call(), answer)
    grown = limit.limit
    service = 0.3
    for _ in range(3 * grown):
        await limit(_timed_call(), answer)
    assert limit.limit < grown


async def test_waiters_are_served_in_order_as_the_limit_moves() -> None:
    tick = Tick()
    limit = AdaptiveLimit(max=8, start=1, clock=tick)
    order: list[int] = []
    await limit.acquire()
    async with anyio.create_task_group() as group:
        for i in range(4):
            group.start_soon(_take, limit, i, order)
            await anyio.lowlevel.checkpoint()
        await _settle()
        assert order == []
        limit.limit = 3  # two more slots: the first two waiters get them
        await _settle()
        assert sorted(order) == [0, 1]
        assert limit.in_flight == 3
        limit.release()  # the first holder leaves: the next waiter goes
        await _settle()
        assert sorted(order[:2]) == [0, 1]
        assert order[2] == 2
        limit.limit = 1  # shrinking takes nothing back; the last waiter waits
        limit.release()
        limit.release()
        await _settle()
        assert len(order) == 3
        assert limit.in_flight == 1
        limit.release()
        await _settle()
        assert order[2:] == [2, 3]
        limit.release()
    assert limit.in_flight == 0


async def _take(limit: AdaptiveLimit, i: int, order: list[int]) -> None:
    await limit.acquire()
    order.append(i)


async def _settle() -> None:
    for _ in range(5):
        await anyio.lowlevel.checkpoint()


async def test_a_cancelled_waiter_leaves_no_slot_behind() -> None:
    tick = Tick()
    limit = AdaptiveLimit(max=4, start=1, clock=tick)
    await limit.acquire()
    with anyio.move_on_after(0.01):  # real time, but only a bound: it is always hit
        await limit.acquire()
    assert limit.in_flight == 1
    # Handed a slot and cancelled in the same moment: the slot goes to the next waiter.
    async with anyio.create_task_group() as group:
        scope = anyio.CancelScope()

        async def cancelled() -> None:
            with scope:
                await limit.acquire()
                limit.release()  # through after all: it hands the slot straight on

        group.start_soon(cancelled)
        await _settle()
        got: list[int] = []
        group.start_soon(_take, limit, 7, got)
        await _settle()
        limit.release()  # hands the slot to the first waiter ...
        scope.cancel()  # ... which is cancelled before it runs
        await _settle()
        assert got == [7]
        assert limit.in_flight == 1
        limit.release()
    assert limit.in_flight == 0
