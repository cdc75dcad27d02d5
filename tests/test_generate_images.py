"""`FluxClient.generate_images`: n images of one prompt, all of them or an error."""

from __future__ import annotations

import anyio
import httpx
import pytest

from flux_sdk import (
    AttemptNext,
    Call,
    ConcurrencyLimit,
    Emulator,
    FluxClient,
    FluxEvent,
    GenerateRequest,
    InvalidRequestError,
    ServerError,
)
from flux_sdk._base._models import MAX_SEED
from flux_sdk.emulator import EmulatorApp, Fault, FaultPlan, render_png

pytestmark = pytest.mark.anyio


async def test_n_images_with_consecutive_seeds_in_order() -> None:
    async with FluxClient(Emulator()) as client:
        images = await client.generate_images("a red fox", 4, seed=10, steps=2)
    assert [image.seed for image in images] == [10, 11, 12, 13]
    for image in images:
        assert image.data == render_png(
            "a red fox", seed=image.seed, steps=2, width=1024, height=1024
        )


async def test_a_request_with_its_own_seed_is_the_base() -> None:
    request = GenerateRequest(prompt="a lighthouse", seed=3)
    async with FluxClient(Emulator()) as client:
        images = await client.generate_images(request, 2)
    assert [image.request.seed for image in images] == [3, 4]


async def test_without_a_seed_the_host_picks_each() -> None:
    app = EmulatorApp()
    async with FluxClient(Emulator(app=app)) as client:
        images = await client.generate_images("a cat", 3)
    assert [image.seed for image in images] == [None, None, None]
    assert app.requests_seen == 3


async def test_they_run_concurrently_within_the_clients_limit() -> None:
    """Three images under a limit of two: at most two requests at once, and two did
    overlap (the emulator's answers are held until both are in flight)."""
    limit = ConcurrencyLimit(2)
    peak = 0
    both_in = anyio.Event()

    async def watch(call: Call, call_next: AttemptNext) -> httpx.Response:
        nonlocal peak
        peak = max(peak, limit.in_flight)
        if peak == 2:
            both_in.set()
        with anyio.fail_after(30):  # a safety net, never reached when it works
            await both_in.wait()
        return await call_next(call)

    async with FluxClient(Emulator(), max_concurrency=limit, attempt_middleware=[watch]) as client:
        images = await client.generate_images("a cat", 3, seed=1)
    assert len(images) == 3
    assert peak == 2


@pytest.mark.parametrize("n", [0, -1, True, 2.0, "4"])
async def test_n_must_be_a_positive_whole_number(n: object) -> None:
    app = EmulatorApp()
    async with FluxClient(Emulator(app=app)) as client:
        with pytest.raises(InvalidRequestError, match="n must be a whole number >= 1"):
            await client.generate_images("a cat", n)  # type: ignore[arg-type]
    assert app.requests_seen == 0


async def test_seeds_past_the_maximum_are_refused_before_sending() -> None:
    app = EmulatorApp()
    async with FluxClient(Emulator(app=app)) as client:
        with pytest.raises(InvalidRequestError, match="run past"):
            await client.generate_images("a cat", 2, seed=MAX_SEED)
    assert app.requests_seen == 0


async def test_every_request_is_checked_before_any_is_sent() -> None:
    app = EmulatorApp()
    async with FluxClient(Emulator(app=app)) as client:
        with pytest.raises(InvalidRequestError, match="emulator needs steps between 1 and 8"):
            await client.generate_images("a cat", 3, steps=9)
    assert app.requests_seen == 0


async def test_the_first_error_cancels_the_rest_and_is_raised_as_itself() -> None:
    """One image fails for good while two hang: the failure is raised (not an exception
    group), the hanging calls are cancelled, and no image is returned."""
    plan = FaultPlan([Fault.UNAVAILABLE, Fault.STALL, Fault.STALL], stall_seconds=3600)
    events: list[FluxEvent] = []
    async with FluxClient(
        Emulator(app=EmulatorApp(faults=plan)), max_retries=0, on_event=events.append
    ) as client:
        with anyio.fail_after(30):  # a safety net: cancelling takes milliseconds
            with pytest.raises(ServerError, match=r"^emulator answered HTTP 503"):
                await client.generate_images("a cat", 3, seed=1)
    assert plan.requests == 3
    assert [e.kind for e in events if e.kind in ("success", "failure")] == ["failure"]


async def test_a_closed_client_refuses() -> None:
    client = FluxClient(Emulator())
    await client.aclose()
    with pytest.raises(Exception, match="this FluxClient is closed"):
        await client.generate_images("a cat", 2)
