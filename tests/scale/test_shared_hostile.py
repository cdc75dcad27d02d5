"""SharedLimit under hostile conditions: a cancel while Redis is slow, passwords in URLs."""

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


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_call_cancelled_while_redis_is_slow_gives_its_lease_back(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import redis.asyncio
    from redis.asyncio.connection import Connection

    sent = asyncio.Event()
    real_send = Connection.send_packed_command

    async def spy(self: Connection, command: Any, check_health: bool = True) -> None:
        await real_send(self, command, check_health)
        if b"EVALSHA" in b"".join(c if isinstance(c, bytes) else b"" for c in command):
            sent.set()  # the acquire script's bytes are in Redis's socket

    name = f"t-{uuid.uuid4().hex}"
    host = counting_emulator()
    with serve(host) as url:
        limit = SharedLimit(redis_url, name, concurrency=2)
        async with (
            limit,
            FluxClient(Together(KEY, base_url=url + PATH), max_concurrency=limit) as c,
        ):
            await c.generate("warm up: loads the scripts", width=64, height=64)
            # Redis stops answering for a second, as `redis-cli DEBUG SLEEP 1` does.
            sleeper = socket.create_connection(("127.0.0.1", _port(redis_url)))
            sleeper.sendall(b"DEBUG SLEEP 1\r\n")
            monkeypatch.setattr(Connection, "send_packed_command", spy)
            task = asyncio.ensure_future(c.generate("cancelled in acquire", width=64, height=64))
            await sent.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            monkeypatch.undo()
            sleeper.recv(64)  # Redis is awake again
            sleeper.close()
            check = redis.asyncio.Redis.from_url(redis_url)
            try:
                held = await check.zcard("{flux_sdk:" + name + "}:leases")
            finally:
                await check.aclose()
    assert held == 0, "the cancelled call's lease is lost to every process until it expires"
    assert host.statuses == {200: 1}


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
