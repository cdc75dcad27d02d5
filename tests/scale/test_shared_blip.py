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
            assert "using local limits" in caplog.text
    assert f"SharedLimit 'gone' lost Redis at redis://***@127.0.0.1:{port}/0" in caplog.text
    assert "pw-not-shown" not in caplog.text
