"""A Redis blip under SharedLimit: killed while calls hold leases and others wait, then
restarted empty. No call fails, and the host never has more than the limit in flight.
Redis lost for good: each ``on_unavailable`` value and what it says."""

from __future__ import annotations

import contextlib
import logging
import re
import uuid
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import httpx
import pytest

from flux_sdk import FluxError, SharedLimit, TransportError
from flux_sdk._policy import _shared
from tests._server import serve

from .conftest import free_port, redis_on

pytestmark = pytest.mark.anyio

SIZE = 4  # the shared concurrency


class _Call:
    provider_name = "together"
    concurrency: int | None = None


class _Host:
    """What the host sees: requests in flight now and the most at once; and the calls
    that failed (a flux_sdk error, or their 40 s deadline passed)."""

    def __init__(self) -> None:
        self.in_flight = self.most = self.held = self.waiters_ran = self.failed = 0
        self.holding, self.release = anyio.Event(), anyio.Event()

    def _enter(self) -> None:
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)

    async def hold(self, call: Any) -> httpx.Response:
        self._enter()
        self.held += 1
        if self.held == SIZE:
            self.holding.set()
        try:
            await self.release.wait()
        finally:
            self.in_flight -= 1
        return httpx.Response(200)

    async def quick(self, call: Any) -> httpx.Response:
        self._enter()
        self.waiters_ran += 1
        try:
            await anyio.lowlevel.checkpoint()
        finally:
            self.in_flight -= 1
        return httpx.Response(200)

    async def run(self, limit: SharedLimit, send: Any) -> None:
        with anyio.CancelScope(deadline=anyio.current_time() + 40):  # the call's deadline
            with contextlib.suppress(FluxError):
                await limit(_Call(), send)  # type: ignore[arg-type]
                return
        self.failed += 1


async def _until(condition: Any, what: str) -> None:
    """Poll what a real server's kill and restart needs (bounded; nothing timed is asserted)."""
    with anyio.fail_after(30):
        while not await condition():  # noqa: ASYNC110 - a server offers no event for it
            await anyio.sleep(0.01)


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.parametrize(
    ("holders", "waiters"),
    [((4, 0), (0, 4)), ((2, 2), (2, 2))],
    ids=["one-process-holds-all", "both-hold-and-wait"],
)
async def test_a_redis_blip_fails_no_call_and_keeps_the_limit(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    holders: tuple[int, int],
    waiters: tuple[int, int],
) -> None:
    import redis.asyncio

    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    name = f"t-{uuid.uuid4().hex}"
    # Two processes as Redis sees them: each its own client, gate, leases and renewals.
    limits = [SharedLimit(url, name, concurrency=SIZE, lease_seconds=3.0) for _ in range(2)]
    host, refused = _Host(), set()

    def spy_on(limit: SharedLimit) -> None:
        real = limit._eval

        async def spy(name: str, keys: list[str], args: list[Any]) -> Any:
            answer = await real(name, keys, args)
            if name == "acquire" and answer != 0:
                refused.add(args[2])  # this waiter is blocked in Redis
            return answer

        limit._eval = spy  # type: ignore[method-assign]

    for limit in limits:
        spy_on(limit)

    async def all_waiting() -> bool:
        return len(refused) >= SIZE

    async def loss_seen() -> bool:
        return any("lost Redis" in record.getMessage() for record in caplog.records)

    caplog.set_level(logging.INFO, "flux_sdk")
    with contextlib.ExitStack() as servers:
        first = servers.enter_context(redis_on(port, tmp_path))
        with anyio.fail_after(120):
            async with limits[0], limits[1], anyio.create_task_group() as tasks:
                for limit, n in zip(limits, holders, strict=True):
                    for _ in range(n):
                        tasks.start_soon(host.run, limit, host.hold)
                await host.holding.wait()
                held = set().union(*(limit._held for limit in limits))
                for limit, n in zip(limits, waiters, strict=True):
                    for _ in range(n):
                        tasks.start_soon(host.run, limit, host.quick)
                await _until(all_waiting, "every waiter blocked in Redis")
                first.kill()  # Redis is killed...
                first.wait(timeout=10)
                await _until(loss_seen, "Redis seen lost")
                servers.enter_context(redis_on(port, tmp_path))  # ...and comes back empty
                async with redis.asyncio.Redis.from_url(url) as check:
                    key = "{flux_sdk:" + name + "}:leases"

                    async def settled() -> bool:  # the held leases are counted, or a waiter ran
                        scores = [await check.zscore(key, lease) for lease in held]
                        return host.waiters_ran > 0 or None not in scores

                    await _until(settled, "the held leases back in Redis")
                host.release.set()
    print(f"\nblip {holders}+{waiters}: most in flight {host.most} (shared concurrency "
          f"{SIZE}), {host.failed} of {2 * SIZE} calls failed")  # fmt: skip
    assert host.failed == 0, f"{host.failed} calls failed"
    assert host.waiters_ran == SIZE
    assert host.most <= SIZE, f"{host.most} in flight after the restart, over {SIZE}"
    said = [record.getMessage() for record in caplog.records if record.name == "flux_sdk"]
    lost = [line for line in said if "lost Redis" in line]
    assert 1 <= len(lost) <= 2, lost  # a line for each process, not one for each call
    assert "calls wait up to 60 s (or their deadline) for it to come back" in lost[0]
    assert any("answers again" in line for line in said)


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.parametrize("on_unavailable", ["fail", "local"])
async def test_redis_lost_for_good(
    tmp_path: Path, on_unavailable: str, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    monkeypatch.setattr(_shared, "_WAIT_FOR_REDIS", 0.0)
    port = free_port()
    limit = SharedLimit(
        f"redis://:pw-not-shown@127.0.0.1:{port}/0",
        "gone",
        concurrency=1,
        on_unavailable=on_unavailable,  # type: ignore[arg-type]
    )
    ran = 0

    async def send(call: Any) -> httpx.Response:
        nonlocal ran
        ran += 1
        return httpx.Response(200)

    async with limit:
        with redis_on(port, tmp_path, "--requirepass", "pw-not-shown"):
            await limit(_Call(), send)  # type: ignore[arg-type]
        if on_unavailable == "fail":
            with pytest.raises(TransportError) as caught:
                await limit(_Call(), send)  # type: ignore[arg-type]
            assert re.fullmatch(
                rf"together: SharedLimit 'gone' lost Redis at redis://\*\*\*@127\.0\.0\.1:{port}/0 "
                r"\(ConnectionError: .+\) and it did not come back within 0 s; the request "
                r'was not sent\. Check Redis, or pass on_unavailable="local"',
                str(caught.value),
            ), str(caught.value)
            assert caught.value.retryable
            assert caught.value.billed == "no"
            assert ran == 1
        else:
            await limit(_Call(), send)  # type: ignore[arg-type]
            assert ran == 2
            assert re.search(
                rf"SharedLimit 'gone' lost Redis at redis://\*\*\*@127\.0\.0\.1:{port}/0 "
                r"\(ConnectionError: .+\); using local limits for 30 s",
                caplog.text,
            )
    assert f"SharedLimit 'gone' lost Redis at redis://***@127.0.0.1:{port}/0" in caplog.text
    assert "pw-not-shown" not in caplog.text


def test_a_redis_blip_across_two_processes(tmp_path: Path) -> None:
    """The issue's case with real processes and a real host: A holds all 4 slots, B's
    4 calls wait in Redis; Redis is killed and restarted empty."""
    import asyncio
    import socket
    import threading

    import redis.asyncio

    from flux_sdk.emulator import Capacity

    from ._host import counting_emulator
    from .test_shared_processes import summary, wait_until, workers

    answer = threading.Event()  # the host answers nothing until the test says so

    async def served(seconds: float) -> None:
        while not answer.is_set():  # noqa: ASYNC110 - set from the test's thread
            await anyio.sleep(0.01)

    host = counting_emulator(Capacity(replicas=8, median=0, sleep=served))
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    name = f"procs-{uuid.uuid4().hex}"
    key = "{flux_sdk:" + name + "}:leases"
    one = {"redis_url": url, "name": name, "concurrency": SIZE, "lease_seconds": 9.0,
           "n": SIZE, "deadline": 40}  # fmt: skip

    async def clients() -> list[dict[str, Any]]:
        async with redis.asyncio.Redis.from_url(url) as check:
            return await check.client_list()

    async def leases() -> list[bytes]:
        async with redis.asyncio.Redis.from_url(url) as check:
            found: list[bytes] = await check.zrange(key, 0, -1)  # type: ignore[assignment]
            return found

    def blocked() -> int:
        return sum(client["cmd"] == "blpop" for client in asyncio.run(clients()))

    with contextlib.ExitStack() as stack:
        first = stack.enter_context(redis_on(port, tmp_path))
        base = stack.enter_context(serve(host))
        (a,) = stack.enter_context(workers([{**one, "url": base}]))
        wait_until(lambda: host.in_flight == SIZE, "A's calls in flight")
        (b,) = stack.enter_context(workers([{**one, "url": base}]))
        wait_until(lambda: blocked() >= SIZE, "B's calls waiting in Redis")
        first.kill()  # Redis is killed...
        first.wait(timeout=10)
        stack.enter_context(redis_on(port, tmp_path))  # ...and comes back empty
        mine = f"{socket.gethostname()}:{a.pid}:".encode()

        def settled() -> bool:  # A's leases counted again, or B got in
            held = sum(lease.startswith(mine) for lease in asyncio.run(leases()))
            return host.in_flight > SIZE or held == SIZE

        wait_until(settled, "A's leases back in Redis")
        answer.set()
        results = [summary(proc) for proc in (a, b)]
    print(f"\nblip, two processes: most in flight at the host {host.max_in_flight} "
          f"(shared concurrency {SIZE}); {results}")  # fmt: skip
    assert [r["ok"] for r in results] == [SIZE, SIZE], results
    assert host.statuses == {200: 2 * SIZE}
    assert host.max_in_flight <= SIZE


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_redis_that_lost_the_keys_waits_for_the_held_leases(redis_url: str) -> None:
    """The scripts' part, without a restart: the limit's keys deleted (as a restart or an
    eviction would) while A holds the only slot."""
    import redis.asyncio

    name = f"epoch-{uuid.uuid4().hex}"
    a, b, fresh = (SharedLimit(redis_url, name, concurrency=1) for _ in range(3))
    keys = ["{flux_sdk:" + name + "}:" + part for part in ("leases", "epoch")]
    lease_us = 30_000_000
    async with a, b, fresh, redis.asyncio.Redis.from_url(redis_url) as check:
        for limit in (a, b, fresh):
            await limit._connect()
        assert await a._lease_script("acquire", [1, lease_us, "a"]) == 0  # a first use
        assert await b._lease_script("acquire", [1, lease_us, "b"]) > 0  # A holds it
        await check.delete(*keys)  # Redis forgets: B must not take A's slot
        wait_us = await b._lease_script("acquire", [1, lease_us, "b"])
        assert wait_us > 10_000_000  # held off a renewal period and a second (11 s)
        assert await a._lease_script("renew", [lease_us, "a"]) == 1  # A puts its lease back
        assert await check.zrange(keys[0], 0, -1) == [b"a"]
        assert await b._lease_script("acquire", [1, lease_us, "b"]) > 0
        await check.delete(*keys)
        # A process that never saw the keys cannot tell a restart from a first use.
        assert await fresh._lease_script("acquire", [1, lease_us, "c"]) == 0


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_the_wait_for_redis_ends_with_the_calls_deadline(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from flux_sdk import FluxClient, RequestTimeout, Together
    from flux_sdk.emulator import Capacity

    from ._host import KEY, PATH, counting_emulator

    port, host = free_port(), counting_emulator(Capacity(median=0))
    limit = SharedLimit(f"redis://127.0.0.1:{port}/0", f"t-{uuid.uuid4().hex}", concurrency=1)
    with serve(host) as url:
        provider = Together(KEY, base_url=url + PATH)
        async with FluxClient(provider, max_concurrency=limit) as flux:
            with redis_on(port, tmp_path):
                await flux.generate("a fox", width=64, height=64)
            with pytest.raises(RequestTimeout, match=r"0\.5 s deadline") as caught:
                await flux.generate("a fox", width=64, height=64, deadline=0.5)
    assert caught.value.billed == "no"
    assert host.statuses == {200: 1}  # the second call sent nothing
    assert "lost Redis" in caplog.text


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_an_epoch_key_lost_alone_holds_no_lease_off(redis_url: str) -> None:
    """Evicted by itself (the leases still there), the marker is no sign of a restart."""
    import redis.asyncio

    name = f"epoch-{uuid.uuid4().hex}"
    a, b = (SharedLimit(redis_url, name, concurrency=2) for _ in range(2))
    async with a, b, redis.asyncio.Redis.from_url(redis_url) as check:
        for limit in (a, b):
            await limit._connect()
        assert await a._lease_script("acquire", [2, 30_000_000, "a"]) == 0
        assert await b._lease_script("acquire", [2, 30_000_000, "b0"]) == 0
        await b._release("b0")
        await check.delete("{flux_sdk:" + name + "}:epoch")
        assert await b._lease_script("acquire", [2, 30_000_000, "b"]) == 0
