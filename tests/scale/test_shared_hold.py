"""A SharedLimit on a queue route counts jobs: a lease is held from submit to result,
renewed while the job waits between polls, against a real redis-server.

The emulator (fal, Replicate) runs on loopback with a `Capacity` on a test clock that
moves when the client's injected sleep is asked to wait, so a job ends only when its
client has waited for it; ``max_in_service`` is the most jobs the host ran at once.
"""

from __future__ import annotations

import uuid
from typing import Any

import anyio
import pytest

from flux_sdk import Fal, FluxClient, Replicate, Retry, SharedLimit, TransportError
from flux_sdk.emulator import DEFAULT_API_KEY, Capacity, EmulatorApp, Fault, FaultPlan
from tests._server import serve

pytestmark = [pytest.mark.anyio, pytest.mark.parametrize("anyio_backend", ["asyncio"])]


class Time:
    """The emulator's clock; the client's sleep moves it on by what it was asked."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        await anyio.lowlevel.checkpoint()


def emulator(time: Time) -> EmulatorApp:
    capacity = Capacity(replicas=6, median=1.0, clock=time)
    return EmulatorApp(default_size=32, capacity={"fal": capacity, "replicate": capacity})


def providers(url: str) -> dict[str, Any]:
    return {
        "fal": Fal(DEFAULT_API_KEY, base_url=url),
        "replicate": Replicate(DEFAULT_API_KEY, base_url=url, wait=None, poll_interval=0.1),
    }


def leases_key(name: str) -> str:
    return "{flux_sdk:" + name + "}:leases"


@pytest.mark.parametrize("host", ["fal", "replicate"])
async def test_a_shared_limit_of_2_runs_at_most_2_jobs_at_the_host(
    redis_url: str, host: str
) -> None:
    time = Time()
    app = emulator(time)
    limit = SharedLimit(redis_url, f"t-{uuid.uuid4().hex}", concurrency=2, rate=1000)
    reserved = 0  # rate slots taken: one per request still, a held job's polls too
    real_eval = limit._eval

    async def counting(name: str, keys: list[str], args: list[Any]) -> Any:
        nonlocal reserved
        reserved += name == "reserve"
        return await real_eval(name, keys, args)

    limit._eval = counting  # type: ignore[method-assign]
    with serve(app) as url:
        retry = Retry(3, sleep=time.sleep)
        async with (
            limit,
            FluxClient(
                providers(url)[host], max_concurrency=limit, rate_limit=limit, max_retries=retry
            ) as flux,
        ):
            images = await flux.generate_images("a fox", 6)
    assert len(images) == 6
    assert app.stats[host].billed == 6
    assert app.load[host].max_in_service == 2
    assert limit.in_flight == 0
    sent = flux.ledger.total.attempts
    assert sent > 6 * 3  # submits, polls, downloads
    assert reserved == sent


async def test_a_held_lease_is_renewed_past_lease_seconds_and_freed_at_the_end(
    redis_url: str,
) -> None:
    """The job waits between polls until its lease has been renewed for longer than
    ``lease_seconds``: the lease is still in Redis, unexpired (so, at concurrency=1,
    no other process could take a slot); once the result is in it is gone."""
    import redis.asyncio

    time = Time()
    app = emulator(time)
    limit_name = f"t-{uuid.uuid4().hex}"
    limit = SharedLimit(redis_url, limit_name, concurrency=1, lease_seconds=0.3)
    renewals = 0
    renewed_long = anyio.Event()

    real_eval = limit._eval

    async def counting(name: str, keys: list[str], args: list[Any]) -> Any:
        nonlocal renewals
        answer = await real_eval(name, keys, args)
        if name == "renew":
            renewals += 1
            if renewals >= 4:  # 4 x lease_seconds / 3: past the lease's first expiry
                renewed_long.set()
        return answer

    limit._eval = counting  # type: ignore[method-assign]
    seen: list[tuple[int, float, float]] = []

    async def sleep(seconds: float) -> None:
        if not seen:  # the first wait between polls: the job holds its lease meanwhile
            if limit.in_flight:  # (a lease given back after the submit is never renewed)
                await renewed_long.wait()
            async with redis.asyncio.Redis.from_url(redis_url) as check:
                leases: list[Any] = await check.zrange(
                    leases_key(limit_name), 0, -1, withscores=True
                )
                clock: tuple[int, int] = await check.time()
            now = clock[0] * 1e6 + clock[1]
            seen.extend((len(leases), float(score), now) for _, score in leases)
        await time.sleep(seconds)

    with serve(app) as url:
        async with (
            limit,
            FluxClient(
                providers(url)["fal"], max_concurrency=limit, max_retries=Retry(3, sleep=sleep)
            ) as flux,
        ):
            image = await flux.generate("a fox")
            assert limit.in_flight == 0
        async with redis.asyncio.Redis.from_url(redis_url) as check:
            left = await check.zcard(leases_key(limit_name))
    assert image.provider == "fal"
    assert len(seen) == 1
    count, expires_us, now_us = seen[0]
    assert count == 1  # the job's lease, held through the wait
    assert expires_us > now_us  # renewed: without it, it would have expired by now
    assert left == 0


async def test_a_cancelled_job_gives_its_lease_back(redis_url: str) -> None:
    import redis.asyncio

    time = Time()
    app = emulator(time)
    name = f"t-{uuid.uuid4().hex}"
    limit = SharedLimit(redis_url, name, concurrency=1)
    waiting = anyio.Event()

    async def stuck(seconds: float) -> None:
        waiting.set()
        await anyio.sleep_forever()

    with serve(app) as url:
        async with (
            limit,
            FluxClient(
                providers(url)["replicate"],
                max_concurrency=limit,
                max_retries=Retry(3, sleep=stuck),
            ) as flux,
        ):
            async with anyio.create_task_group() as group:
                group.start_soon(flux.generate, "stuck")
                await waiting.wait()
                assert limit.in_flight == 1
                group.cancel_scope.cancel()
            assert limit.in_flight == 0
        async with redis.asyncio.Redis.from_url(redis_url) as check:
            assert await check.zcard(leases_key(name)) == 0
    assert app.load["replicate"].in_service == 0  # cancelled on the host first


@pytest.mark.parametrize("host", ["fal", "replicate"])
async def test_a_submit_whose_answer_was_lost_keeps_its_lease_for_a_jobs_time(
    redis_url: str, host: str
) -> None:
    """The host took the job but the answer to its submit was cut: the job runs there
    unseen, so its lease stays taken for about a job's time (learned from the job
    before it) and the next submit, at concurrency=1, finds the host free."""
    time = Time()
    capacity = Capacity(replicas=1, median=1.0, clock=time)
    faults = FaultPlan([None, Fault.TRUNCATED])
    app = EmulatorApp(default_size=32, capacity={host: capacity}, faults=faults)
    limit = SharedLimit(redis_url, f"t-{uuid.uuid4().hex}", concurrency=1)
    with serve(app) as url:
        retry = Retry(3, sleep=time.sleep)
        async with (
            limit,
            FluxClient(providers(url)[host], max_concurrency=limit, max_retries=retry) as flux,
        ):
            await flux.generate("a fox")
            with pytest.raises(TransportError):
                await flux.generate("a lost fox")
            assert limit.in_flight == 0
            await flux.generate("a second fox")
    assert app.load[host].refused == 0
    assert app.stats[host].billed == 3
