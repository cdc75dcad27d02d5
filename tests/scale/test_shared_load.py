"""Balancing on the shared count: a router over `SharedLimit` routes sees the calls the
other processes have at each host (published in Redis), and a Redis it cannot read
never fails a call."""

from __future__ import annotations

import math
import uuid

import pytest

from flux_sdk import FluxClient, Route, SharedLimit, Together
from flux_sdk._policy._shared_load import SharedLoad
from tests._server import serve

from ._host import KEY, PATH, counting_emulator
from .conftest import free_port

pytestmark = [pytest.mark.anyio, pytest.mark.parametrize("anyio_backend", ["asyncio"])]


def name() -> str:
    return f"load-{uuid.uuid4().hex}"


def hosts(url: str) -> tuple[Together, Together]:
    """Two routes to the emulator's Together, told apart by name."""
    first, second = Together(KEY, base_url=url + PATH), Together(KEY, base_url=url + PATH)
    second.name = "together-b"
    return first, second


async def publish(load: SharedLoad, calls: int) -> None:
    load._next = -math.inf  # now, not after the 50 ms between reads
    await load.refresh(calls)


async def test_each_process_reads_the_calls_the_others_published(redis_url: str) -> None:
    host = name()
    one, two, three = (SharedLimit(redis_url, host, concurrency=4) for _ in range(3))
    async with one, two, three:
        first, second, third = SharedLoad(one), SharedLoad(two), SharedLoad(three)
        await publish(first, 5)
        await publish(second, 2)
        await publish(third, 0)
        assert (second.others, third.others) == (5, 7)
        await publish(first, 1)
        await publish(third, 0)
        assert third.others == 3


async def test_a_router_sends_calls_past_the_host_other_processes_fill(redis_url: str) -> None:
    """Another process has 8 calls at the first host (4 slots): every call of this one
    goes to the second, though this process alone has no call at either."""
    counting = counting_emulator()
    names = name(), name()
    with serve(counting) as url:
        busy = SharedLimit(redis_url, names[0], concurrency=4)
        elsewhere = SharedLoad(busy)
        limits = [SharedLimit(redis_url, limit, concurrency=4) for limit in names]
        routes = [
            Route(host, max_concurrency=limit)
            for host, limit in zip(hosts(url), limits, strict=True)
        ]
        async with busy, limits[0], limits[1], FluxClient(routes, routing="balanced") as flux:
            served = []
            for i in range(8):
                await publish(elsewhere, 8)
                served.append((await flux.generate(f"a fox {i}", width=64, height=64)).provider)
    assert served == ["together-b"] * 8


async def test_a_redis_it_cannot_read_fails_no_call_and_counts_stay_local() -> None:
    """Redis gone: the calls still run (on local limits, as asked), balanced on this
    process's own counts."""
    counting = counting_emulator()
    dead = f"redis://127.0.0.1:{free_port()}/0"
    with serve(counting) as url:
        routes = [
            Route(
                host,
                max_concurrency=SharedLimit(dead, name(), concurrency=2, on_unavailable="local"),
            )
            for host in hosts(url)
        ]
        async with FluxClient(routes, routing="balanced") as flux:
            for i in range(6):
                await flux.generate(f"a fox {i}", width=64, height=64)
            assert flux._router is not None
            assert all(live.shared and live.shared.others == 0 for live in flux._router.routes)
    assert counting.statuses == {200: 6}


async def test_a_read_that_fails_keeps_no_call_waiting() -> None:
    """Under on_unavailable="fail" the limit itself reports a lost Redis; reading the
    load swallows it (the call's own step raises the limit's error)."""
    limit = SharedLimit(f"redis://127.0.0.1:{free_port()}/0", name(), concurrency=2)
    load = SharedLoad(limit)
    async with limit:
        await publish(load, 3)
    assert load.others == 0
    assert not load.stale()  # tried again later, not on every call
