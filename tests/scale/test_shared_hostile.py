"""SharedLimit under hostile conditions: a cancel before Redis answers, passwords in URLs."""

from __future__ import annotations

import asyncio
import socket
import uuid
from typing import Any

import pytest

from flux_sdk import ConfigError, FluxClient, SharedLimit, Together
from tests._server import serve

from ._host import KEY, PATH, counting_emulator

pytestmark = pytest.mark.anyio


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/")[0])


def _wait_for_leases(url: str, key: str, count: int) -> None:
    """Block until Redis holds ``count`` leases under ``key`` (asked on a socket of its
    own, so nothing of the client under test is touched)."""
    command = f"*2\r\n$5\r\nZCARD\r\n${len(key)}\r\n{key}\r\n".encode()
    with socket.create_connection(("127.0.0.1", _port(url)), timeout=5) as probe:
        for _ in range(10_000):
            probe.sendall(command)
            if probe.recv(64) == f":{count}\r\n".encode():
                return
    raise AssertionError(f"Redis never held {count} lease(s) under {key}")


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_call_cancelled_before_redis_answers_its_acquire_gives_its_lease_back(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import redis.asyncio
    from redis.asyncio.connection import Connection

    name = f"t-{uuid.uuid4().hex}"
    leases = "{flux_sdk:" + name + "}:leases"
    real_send = Connection.send_packed_command

    async def spy(self: Connection, command: Any, check_health: bool = True) -> None:
        await real_send(self, command, check_health)
        if b"EVALSHA" in b"".join(c if isinstance(c, bytes) else b"" for c in command):
            monkeypatch.undo()  # the acquire: the release after it goes unwatched
            # Redis has run the script (the lease is taken) and its answer is on the
            # way. The call is cancelled now, before it reads the answer.
            _wait_for_leases(redis_url, leases, 1)
            task.cancel()
            await asyncio.sleep(0)

    host = counting_emulator()
    with serve(host) as url:
        limit = SharedLimit(redis_url, name, concurrency=2)
        async with (
            limit,
            FluxClient(Together(KEY, base_url=url + PATH), max_concurrency=limit) as c,
        ):
            await c.generate("warm up: loads the scripts", width=64, height=64)
            monkeypatch.setattr(Connection, "send_packed_command", spy)
            task = asyncio.ensure_future(c.generate("cancelled in acquire", width=64, height=64))
            with pytest.raises(asyncio.CancelledError):
                await task
            check = redis.asyncio.Redis.from_url(redis_url)
            try:
                held = await check.zcard(leases)
            finally:
                await check.aclose()
    assert held == 0, "the cancelled call's lease is lost to every process until it expires"
    assert host.statuses == {200: 1}


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_call_cancelled_while_it_gives_its_lease_back_is_still_cancelled(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import redis.asyncio

    name = f"t-{uuid.uuid4().hex}"
    winding_down, go_on = asyncio.Event(), asyncio.Event()
    limit = SharedLimit(redis_url, name, concurrency=2)
    real_renew = limit._renew

    async def renew(lease: str) -> None:
        try:
            await real_renew(lease)
        except asyncio.CancelledError:  # the call has its image and ends its renewal,
            winding_down.set()  # which takes a turn of the loop or more
            await go_on.wait()
            raise

    monkeypatch.setattr(limit, "_renew", renew)
    host = counting_emulator()
    with serve(host) as url:
        async with (
            limit,
            FluxClient(Together(KEY, base_url=url + PATH), max_concurrency=limit) as c,
        ):
            task = asyncio.ensure_future(c.generate("cancelled at its end", width=64, height=64))
            await winding_down.wait()
            task.cancel()  # a caller's timeout, say: it must not be swallowed
            go_on.set()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert limit.in_flight == 0
            check = redis.asyncio.Redis.from_url(redis_url)
            try:
                held = await check.zcard("{flux_sdk:" + name + "}:leases")
            finally:
                await check.aclose()
    assert held == 0, "the lease goes back even though the call was cancelled"


SECRET = "hunter2secret"


@pytest.mark.parametrize(
    "url",
    [
        f"redis://:{SECRET}@127.0.0.1:1/0",
        f"redis://user:{SECRET}@127.0.0.1:1/0",
        f"rediss://:{SECRET}@127.0.0.1:1/0",
        f"redis://127.0.0.1:1/0?password={SECRET}",
        f"redis://127.0.0.1:1/0?db=0&password={SECRET}&username={SECRET}u",
        f"redis://127.0.0.1:1/0?username={SECRET}u",
        f"rediss://127.0.0.1:1/0?ssl_cert_reqs=none&password={SECRET}",
        f"unix:///tmp/redis.sock?db=0&password={SECRET}",
        f"unix://user:{SECRET}@/tmp/redis.sock?db=0",
        "redis://127.0.0.1:1/0?password=%68unter2secret",
    ],
)
async def test_no_form_of_redis_password_shows(url: str, anyio_backend: str) -> None:
    limit = SharedLimit(url, "x", concurrency=1)
    shown = repr(limit) + limit.url
    assert SECRET not in shown
    assert "secretu" not in shown
    assert "%68unter" not in shown
    if anyio_backend == "trio":
        return  # SharedLimit says it needs asyncio before it reaches Redis
    with pytest.raises(ConfigError) as caught:
        await limit._connect()
    text = str(caught.value) + repr(caught.value)
    assert SECRET not in text
    assert "%68unter" not in text
    assert "cannot reach Redis" in text


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_renewal_that_reaches_redis_after_the_release_does_not_revive_the_lease(
    redis_url: str,
) -> None:
    """A renewal already sent when its call ends can be run after the release (another
    connection): it must not put the lease back, or the slot stays taken for 30 s."""
    import redis.asyncio

    name = f"t-{uuid.uuid4().hex}"
    leases = "{flux_sdk:" + name + "}:leases"
    limit = SharedLimit(redis_url, name, concurrency=1)
    async with limit, redis.asyncio.Redis.from_url(redis_url) as check:
        await limit._connect()
        assert await limit._lease_script("acquire", [1, 30_000_000, "a"]) == 0
        await limit._release("a")
        assert await limit._lease_script("renew", [30_000_000, "a"]) == 0
        assert await check.zcard(leases) == 0
        # A lease never given back and lost by Redis is still put back by its renewal.
        assert await limit._lease_script("acquire", [1, 30_000_000, "b"]) == 0
        await check.delete(leases)
        assert await limit._lease_script("renew", [30_000_000, "b"]) == 1
        assert await check.zrange(leases, 0, -1) == [b"b"]
