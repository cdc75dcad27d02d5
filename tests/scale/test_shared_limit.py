"""SharedLimit in one process, against a real redis-server and the emulator on loopback."""

from __future__ import annotations

import logging
import uuid

import pytest

from flux_sdk import ConfigError, FluxClient, Route, SharedLimit, Together
from tests._server import serve

from ._host import KEY, PATH, counting_emulator
from .conftest import free_port

pytestmark = pytest.mark.anyio


def name() -> str:
    return f"t-{uuid.uuid4().hex}"


@pytest.mark.parametrize(
    ("args", "kwargs", "says"),
    [
        (("localhost:6379", "x"), {"concurrency": 1}, "Redis URL"),
        (("redis://h", ""), {"concurrency": 1}, "non-empty name"),
        (("redis://h", "x"), {}, "concurrency=, rate=, or both"),
        (("redis://h", "x"), {"concurrency": 0}, "concurrency must be a whole number"),
        (("redis://h", "x"), {"rate": -1}, "rate"),
        (("redis://h", "x"), {"rate": 1, "burst": 0}, "burst"),
        (("redis://h", "x"), {"concurrency": 1, "lease_seconds": 0}, "lease_seconds"),
        (("redis://h", "x"), {"concurrency": 1, "on_unavailable": "ignore"}, "on_unavailable"),
    ],
)
def test_bad_settings_are_config_errors(
    args: tuple[str, str], kwargs: dict[str, object], says: str
) -> None:
    with pytest.raises(ConfigError, match=says):
        SharedLimit(*args, **kwargs)  # type: ignore[arg-type]


def test_the_password_never_shows() -> None:
    limit = SharedLimit("redis://:hunter2secret@127.0.0.1:1/0", "x", concurrency=2, rate=5)
    assert "hunter2secret" not in repr(limit)
    assert repr(limit) == (
        "SharedLimit('redis://***@127.0.0.1:1/0', 'x', concurrency=2, rate=5, current_rate=5)"
    )


def test_a_rate_only_limit_cannot_be_the_concurrency() -> None:
    limit = SharedLimit("redis://127.0.0.1:1/0", "x", rate=5)
    with pytest.raises(ConfigError, match="pass it as rate_limit="):
        FluxClient(Together(KEY), max_concurrency=limit)


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_clients_and_routes_take_it_and_stay_within_it(redis_url: str) -> None:
    host = counting_emulator()
    with serve(host) as url:
        limit = SharedLimit(redis_url, name(), concurrency=2, rate=50)
        async with limit:
            provider = Together(KEY, base_url=url + PATH)
            async with FluxClient(provider, max_concurrency=limit, rate_limit=limit) as one:
                images = await one.generate_images("a fox", 6, width=64, height=64)
            routed = [Route(provider, max_concurrency=limit)]
            async with FluxClient(routed) as two:
                assert two.routes[0].max_concurrency == 2
                await two.generate("a fox", width=64, height=64)
    assert len(images) == 6
    assert host.statuses == {200: 7}
    assert host.max_in_flight <= 2
    assert limit.in_flight == 0


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_unreachable_redis_is_a_config_error_at_first_use(emulator_url: str) -> None:
    url = f"redis://:pw-not-shown@127.0.0.1:{free_port()}/0"
    limit = SharedLimit(url, name(), concurrency=2)
    async with FluxClient(Together(KEY), max_concurrency=limit, max_retries=0) as flux:
        with pytest.raises(ConfigError, match=r"cannot reach Redis.*on_unavailable") as caught:
            await flux.generate("a fox", width=64, height=64)
    assert "pw-not-shown" not in str(caught.value)


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_unreachable_redis_falls_back_to_local_limits_when_asked(
    caplog: pytest.LogCaptureFixture,
) -> None:
    host = counting_emulator()
    limit = SharedLimit(
        f"redis://127.0.0.1:{free_port()}/0", name(), concurrency=1, on_unavailable="local"
    )
    with serve(host) as url, caplog.at_level(logging.WARNING, "flux_sdk"):
        provider = Together(KEY, base_url=url + PATH)
        async with FluxClient(provider, max_concurrency=limit) as flux:
            await flux.generate_images("a fox", 3, width=64, height=64)
    assert host.statuses == {200: 3}
    assert host.max_in_flight == 1
    assert "using local limits" in caplog.text


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_on_trio_it_says_it_needs_asyncio() -> None:
    limit = SharedLimit("redis://127.0.0.1:1/0", name(), concurrency=1)
    async with FluxClient(Together(KEY), max_concurrency=limit) as flux:
        with pytest.raises(ConfigError, match="asyncio only"):
            await flux.generate("a fox", width=64, height=64)
