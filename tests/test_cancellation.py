"""Cancelled at any moment, a call leaves nothing behind: no connection, no task, no wait.

Requests go to the emulator over a real loopback socket, where some answers stall or
trickle so that cancellations land while the body is arriving. About 30% of them are
cancelled at a random moment: by the caller's timeout (``move_on_after``,
``fail_after``), by the SDK's own ``deadline``, or by a sibling task calling
``CancelScope.cancel()`` after a random number of scheduler turns. Quick counts here;
``FLUX_SDK_RELIABILITY=full`` runs 10,000 requests per backend.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import anyio
import httpx
import pytest

from flux_sdk import Dataoorts, FluxClient, FluxError, RequestTimeout
from flux_sdk.emulator import DEFAULT_API_KEY, EmulatorApp, Fault, FaultPlan, render_png

from ._reliability import count, pool_state, record, running_tasks
from ._server import serve

pytestmark = pytest.mark.anyio

REQUESTS = count(quick=300, full=10_000)
CANCEL_SHARE = 0.3
WORKERS = 10  # callers at once; the client lets 8 of them through, the rest wait a turn
SIZE = 64
# Some answers trickle (about 10 ms) or stall (25 ms) before the body: cancellations
# then land mid-body as well as before the request or while waiting for a slot.
APP = EmulatorApp(
    default_size=SIZE,
    faults=FaultPlan(
        rate=0.3,
        kinds=[Fault.SLOW, Fault.STALL],
        seed=11,
        stall_seconds=0.025,
        slow_interval=0.001,
        slow_chunk=96,
    ),
)


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with serve(APP) as base:
        yield base


@dataclass
class Tally:
    outcomes: Counter[str]
    pool_timeouts: int = 0
    wrong_images: int = 0


def _caused_by_pool_timeout(error: BaseException) -> bool:
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, httpx.PoolTimeout):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


async def one_request(client: FluxClient, i: int, tally: Tally) -> None:
    """Request ``i``: plain, or cancelled one of four ways at a random moment."""
    # Seeded by the request's number: the same plan for request i on every run.
    rng = random.Random(f"cancellation {i}")
    prompt, seed = f"cancellation {i}", i + 1
    draw = rng.random()
    share = CANCEL_SHARE / 4
    try:
        if draw < share:
            with anyio.move_on_after(rng.uniform(0, 0.02)) as scope:
                await client.generate(prompt, seed=seed)
            tally.outcomes["moved on" if scope.cancelled_caught else "finished in time"] += 1
        elif draw < 2 * share:
            try:
                with anyio.fail_after(rng.uniform(0, 0.02)):
                    await client.generate(prompt, seed=seed)
                tally.outcomes["finished in time"] += 1
            except TimeoutError:
                tally.outcomes["timed out"] += 1
        elif draw < 3 * share:
            turns = rng.randrange(0, 400)
            finished = False
            async with anyio.create_task_group() as group:

                async def cancel_after_turns() -> None:
                    for _ in range(turns):
                        await anyio.lowlevel.checkpoint()
                    group.cancel_scope.cancel()

                async def call() -> None:
                    nonlocal finished
                    await client.generate(prompt, seed=seed)
                    finished = True
                    group.cancel_scope.cancel()  # the canceller is no longer needed

                group.start_soon(cancel_after_turns)
                group.start_soon(call)
            tally.outcomes["finished in time" if finished else "cancelled by a sibling"] += 1
        elif draw < CANCEL_SHARE:
            try:
                await client.generate(prompt, seed=seed, deadline=rng.uniform(0.0005, 0.02))
                tally.outcomes["finished in time"] += 1
            except RequestTimeout as exc:
                if _caused_by_pool_timeout(exc):
                    raise
                tally.outcomes["past the deadline"] += 1
        else:
            image = await client.generate(prompt, seed=seed)
            expected = render_png(prompt, seed=seed, steps=4, width=SIZE, height=SIZE)
            tally.wrong_images += image.data != expected
            tally.outcomes["plain"] += 1
    except FluxError as exc:
        if _caused_by_pool_timeout(exc):
            tally.pool_timeouts += 1
        tally.outcomes[f"error: {type(exc).__name__}"] += 1


async def test_random_cancellations_leave_no_connection_task_or_pool_wait(
    url: str, anyio_backend: str
) -> None:
    """After thousands of calls cancelled at random moments, the client is as good as new."""
    tally = Tally(Counter())
    # A pool wait longer than a second can only be a leaked connection: it would surface
    # as a PoolTimeout, counted below, instead of hanging the test.
    timeout = httpx.Timeout(10.0, pool=1.0)
    provider = Dataoorts(api_key=DEFAULT_API_KEY, base_url=f"{url}/api/v1")
    tasks_before = running_tasks()
    seen_before = APP.requests_seen
    start = time.perf_counter()
    async with FluxClient(provider, max_concurrency=8, max_retries=0, timeout=timeout) as client:
        schedule = iter(range(REQUESTS))

        async def worker() -> None:
            for i in schedule:
                await one_request(client, i, tally)

        async with anyio.create_task_group() as group:
            for _ in range(WORKERS):
                group.start_soon(worker)
        seconds = time.perf_counter() - start

        pool = pool_state(client)
        tasks_after = running_tasks()
        after = await client.generate("after the storm", seed=5)
        assert after.data == render_png("after the storm", seed=5, steps=4, width=SIZE, height=SIZE)
        pool_after_next = pool_state(client)

    outcomes = tally.outcomes
    completed = outcomes["plain"] + outcomes["finished in time"] + 1  # and the one after
    sent_then_cancelled = APP.requests_seen - seen_before - completed
    cancel_attempts = REQUESTS - outcomes["plain"]
    interrupted = outcomes["moved on"] + outcomes["timed out"]
    interrupted += outcomes["cancelled by a sibling"] + outcomes["past the deadline"]
    record(
        f"cancellation.{anyio_backend}",
        requests=REQUESTS,
        cancel_attempts=cancel_attempts,
        cancelled=interrupted,
        finished_before_cancel=outcomes["finished in time"],
        cancelled_after_sending=sent_then_cancelled,
        plain=outcomes["plain"],
        errors=sum(n for kind, n in outcomes.items() if kind.startswith("error")),
        pool_timeouts=tally.pool_timeouts,
        pool_requests_after=pool["requests"],
        pool_busy_connections_after=pool["busy"],
        tasks_left=tasks_after - tasks_before,
        next_request_ok=True,
        seconds=round(seconds, 2),
    )
    assert sum(outcomes.values()) == REQUESTS, outcomes
    assert tally.pool_timeouts == 0, outcomes
    assert not [kind for kind in outcomes if kind.startswith("error")], outcomes
    assert tally.wrong_images == 0
    assert pool["requests"] == 0, pool
    assert pool["busy"] == 0, pool
    assert pool_after_next["requests"] == 0, pool_after_next
    assert tasks_after == tasks_before
    # The schedule really did cancel a good share, at several kinds of moment.
    assert 0.2 * REQUESTS <= cancel_attempts <= 0.4 * REQUESTS
    assert interrupted >= 0.1 * REQUESTS, outcomes
    for kind in ["moved on", "timed out", "cancelled by a sibling", "past the deadline"]:
        assert outcomes[kind] > 0, outcomes
    # Some cancellations came after the request was on the wire, not only before it.
    assert sent_then_cancelled > 0
    assert sum(APP.faults.injected.values()) > 0
