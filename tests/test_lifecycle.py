"""A client's life: closed under live calls, and used from an event loop not its own.

``aclose()`` while calls are mid-request, asleep in backoff or waiting for the rate
limit stops them all: each raises ConfigError, no request is sent once ``aclose``
returned, and no connection is left open. A client used from a second event loop (a
second ``asyncio.run``, another thread's loop, trio after asyncio) raises ConfigError
saying why, instead of RuntimeErrors from deep inside asyncio.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import anyio
import pytest
import trio

from flux_sdk import (
    ConfigError,
    Dataoorts,
    FluxClient,
    FluxError,
    RateLimit,
    Retry,
    RetryBudget,
)
from flux_sdk.emulator import DEFAULT_API_KEY

from ._hostile import hostile_server
from ._images import image_bytes
from ._reliability import pool_state

pytestmark = pytest.mark.anyio

KEY = "sk-lifecycle-test-7f2a"
PNG = image_bytes("PNG")


def _silent(head: bytes) -> None:
    return None  # read the request, never answer


def _unavailable(head: bytes) -> bytes:
    return b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n"


def _image(head: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: %d\r\n\r\n%s" % (
        len(PNG),
        PNG,
    )


async def _gather_then_close(
    client: FluxClient, calls: int, ready: Callable[[], object]
) -> list[BaseException | None]:
    """Start ``calls`` generates, await ``ready()``, close the client; each call's outcome."""
    outcomes: list[BaseException | None] = []

    async def one(i: int) -> None:
        try:
            await client.generate(f"a red fox number {i}")
        except FluxError as exc:
            outcomes.append(exc)
        else:
            outcomes.append(None)

    async with anyio.create_task_group() as group:
        for i in range(calls):
            group.start_soon(one, i)
        await ready()  # type: ignore[misc]
        await client.aclose()
    return outcomes


async def test_close_mid_request_stops_every_call(anyio_backend: str) -> None:
    """100 gathered calls, 16 of them waiting on a silent server: all end in ConfigError."""
    async with hostile_server(_silent) as server:
        client = FluxClient(Dataoorts(KEY, base_url=server.url), max_concurrency=16)
        outcomes = await _gather_then_close(client, 100, lambda: server.wait_for(16))
        sent = len(server.heads)
        await anyio.wait_all_tasks_blocked()
        assert len(server.heads) == sent == 16  # nothing sent after aclose returned
    assert len(outcomes) == 100
    assert all(isinstance(o, ConfigError) and "closed" in str(o) for o in outcomes)
    state = pool_state(client)
    assert state["busy"] == state["requests"] == state["idle"] == 0


async def test_close_mid_backoff_stops_every_call(anyio_backend: str) -> None:
    """Calls asleep between retries wake to a ConfigError, and never retry."""
    asleep = 0
    all_asleep = anyio.Event()

    async def sleep(seconds: float) -> None:
        nonlocal asleep
        asleep += 1
        if asleep == 40:
            all_asleep.set()
        await anyio.sleep_forever()

    async with hostile_server(_unavailable) as server:
        client = FluxClient(
            Dataoorts(KEY, base_url=server.url),
            max_retries=Retry(5, sleep=sleep, budget=RetryBudget(capacity=100)),
        )
        outcomes = await _gather_then_close(client, 40, all_asleep.wait)
        await anyio.wait_all_tasks_blocked()
        assert len(server.heads) == 40  # one attempt each, no retry after the close
    assert all(isinstance(o, ConfigError) for o in outcomes)
    assert pool_state(client)["busy"] == 0


async def test_close_mid_rate_limit_wait_stops_every_call(anyio_backend: str) -> None:
    """Calls waiting for a rate-limit slot end in ConfigError and never send."""
    waiting = 0
    all_waiting = anyio.Event()

    async def sleep(seconds: float) -> None:
        nonlocal waiting
        waiting += 1
        if waiting == 50:
            all_waiting.set()
        await anyio.sleep_forever()

    async with hostile_server(_image) as server:
        client = FluxClient(
            Dataoorts(KEY, base_url=server.url), rate_limit=RateLimit(1, sleep=sleep)
        )
        await client.generate("the one call that finds a free slot")
        outcomes = await _gather_then_close(client, 50, all_waiting.wait)
        await anyio.wait_all_tasks_blocked()
        assert len(server.heads) == 1  # none of the 50 waiting calls was sent
    assert len(outcomes) == 50
    assert all(isinstance(o, ConfigError) for o in outcomes)


# A client and its event loop


def _client(url: str) -> FluxClient:
    return FluxClient(Dataoorts(DEFAULT_API_KEY, base_url=f"{url}/api/v1"))


def test_a_second_asyncio_run_is_refused_with_a_config_error(emulator_url: str) -> None:
    client = _client(emulator_url)
    first = asyncio.new_event_loop()
    try:
        assert first.run_until_complete(client.generate("a red fox", seed=1)).data
        with pytest.raises(ConfigError, match="another event loop"):
            asyncio.run(client.generate("a red fox", seed=2))
        with pytest.raises(ConfigError, match="another event loop"):
            asyncio.run(client.aclose())
        assert first.run_until_complete(client.generate("a red fox", seed=3)).data
        first.run_until_complete(client.aclose())
    finally:
        first.close()


def test_a_loop_in_another_thread_is_refused_with_a_config_error(emulator_url: str) -> None:
    client = _client(emulator_url)

    async def use_then_close() -> None:
        await client.generate("a red fox", seed=1)
        outcome: list[BaseException] = []
        thread = threading.Thread(target=lambda: _run_in_thread(client, outcome))
        thread.start()
        await anyio.to_thread.run_sync(thread.join)
        assert len(outcome) == 1
        assert isinstance(outcome[0], ConfigError)
        await client.generate("a red fox", seed=3)  # its own loop still works
        await client.aclose()

    asyncio.run(use_then_close())


def _run_in_thread(client: FluxClient, outcome: list[BaseException]) -> None:
    try:
        asyncio.run(client.generate("a red fox", seed=2))
    except BaseException as exc:
        outcome.append(exc)


def test_trio_after_asyncio_is_refused_with_a_config_error(emulator_url: str) -> None:
    client = _client(emulator_url)
    first = asyncio.new_event_loop()

    async def on_trio() -> None:
        await client.generate("a red fox", seed=2)

    try:
        first.run_until_complete(client.generate("a red fox", seed=1))
        with pytest.raises(ConfigError, match="another event loop"):
            trio.run(on_trio)
        first.run_until_complete(client.aclose())
    finally:
        first.close()
