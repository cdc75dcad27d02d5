"""Replicate against the emulator over loopback: the whole life, faults, held waits."""

from __future__ import annotations

from typing import Any

import anyio
import httpx
import pytest

from flux_sdk import (
    AuthenticationError,
    BadRequestError,
    FluxClient,
    ProviderError,
    Replicate,
    RequestTimeout,
    Retry,
)
from flux_sdk.emulator import (
    DEFAULT_API_KEY,
    EmulatorApp,
    Fault,
    FaultPlan,
    ReplicateQueue,
    render_png,
)

from ._server import serve
from ._sleeps import Sleeps

pytestmark = pytest.mark.anyio


# Against the emulator, over loopback


def expected(
    prompt: str, seed: int | None, steps: int = 4, size: tuple[int, int] = (1024, 1024)
) -> bytes:
    return render_png(prompt, seed=seed, steps=steps, width=size[0], height=size[1])


async def test_the_whole_life_against_the_emulator() -> None:
    """starting twice, processing once, then the image the emulator serves itself."""
    app = EmulatorApp(replicate=ReplicateQueue(starting=2, processing=1, run_seconds=None))
    clock = Sleeps()
    with serve(app) as url:
        replicate = Replicate(DEFAULT_API_KEY, base_url=url, poll_interval=0.1)
        async with FluxClient(replicate, max_retries=Retry(3, sleep=clock)) as flux:
            image = await flux.generate("a fox", seed=9, steps=2, width=1344, height=768)
    assert image.data == expected("a fox", 9, 2, (1344, 768))
    (made,) = app.replicate.predictions.values()
    assert (made.status, made.polls, made.cancel_requests) == ("succeeded", 3, 0)
    assert made.input["go_fast"] is False
    assert clock.delays == [0.1, 0.1, 0.1]


async def test_faults_on_polls_and_download_are_retried_against_the_emulator() -> None:
    faults = FaultPlan(
        [None, Fault.SERVER_ERROR, Fault.RATE_LIMIT, None, Fault.BAD_GATEWAY], retry_after=0
    )
    app = EmulatorApp(replicate=ReplicateQueue(starting=1, processing=0), faults=faults)
    with serve(app) as url:
        async with FluxClient(
            Replicate(DEFAULT_API_KEY, base_url=url), max_retries=Retry(3, sleep=Sleeps())
        ) as flux:
            image = await flux.generate("a fox", seed=2)
    assert image.data == expected("a fox", 2)
    assert len(app.replicate.predictions) == 1


@pytest.mark.parametrize(("outcome", "match"), [("failed", "NSFW"), ("aborted", "not charged")])
async def test_ended_predictions_against_the_emulator(outcome: Any, match: str) -> None:
    app = EmulatorApp(replicate=ReplicateQueue(starting=0, processing=1, outcome=outcome))
    with serve(app) as url:
        async with FluxClient(
            Replicate(DEFAULT_API_KEY, base_url=url), max_retries=Retry(3, sleep=Sleeps())
        ) as flux:
            with pytest.raises(ProviderError, match=match):
                await flux.generate("a fox")


async def test_the_deadline_cancels_on_the_emulator() -> None:
    app = EmulatorApp(replicate=ReplicateQueue(processing=10**9, run_seconds=None))
    with serve(app) as url:
        replicate = Replicate(DEFAULT_API_KEY, base_url=url, poll_interval=0.02)
        async with FluxClient(replicate, deadline=0.3) as flux:
            with pytest.raises(RequestTimeout):
                await flux.generate("a fox")
    (made,) = app.replicate.predictions.values()
    assert (made.status, made.cancel_requests) == ("canceled", 1)


class Held:
    """The emulator's sleep while it holds a create: records the seconds, waits none."""

    def __init__(self) -> None:
        self.seconds: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.seconds.append(seconds)
        await anyio.lowlevel.checkpoint()


@pytest.mark.parametrize(
    ("wait", "run_seconds", "held", "polls"),
    [(60, 0.0, [0.0], 0), (5, 4.0, [4.0], 0), (5, 30.0, [5.0], 2), (None, 0.0, [], 2)],
    ids=["fast", "in-time", "too-slow", "no-prefer"],
)
async def test_the_emulator_holds_a_prefer_wait_create_until_the_prediction_ends(
    wait: int | None, run_seconds: float, held: list[float], polls: int
) -> None:
    """As Replicate: a create with Prefer: wait=N is answered when the prediction ends
    (with its output) if it ends within N seconds, else after N seconds, still running."""
    sleep = Held()
    queue = ReplicateQueue(starting=1, processing=1, run_seconds=run_seconds, sleep=sleep)
    app = EmulatorApp(replicate=queue)
    with serve(app) as url:
        replicate = Replicate(DEFAULT_API_KEY, base_url=url, wait=wait, poll_interval=0.1)
        async with FluxClient(replicate, max_retries=Retry(3, sleep=Sleeps())) as flux:
            image = await flux.generate("a fox", seed=5)
    assert image.data == expected("a fox", 5)
    (made,) = app.replicate.predictions.values()
    assert (made.polls, made.finished, sleep.seconds) == (polls, polls == 0, held)


async def test_a_bare_prefer_wait_is_held_up_to_sixty_seconds() -> None:
    sleep = Held()
    app = EmulatorApp(replicate=ReplicateQueue(run_seconds=90, sleep=sleep))
    with serve(app) as url:
        async with httpx.AsyncClient() as http:
            response = await http.post(
                f"{url}/v1/models/black-forest-labs/flux-schnell/predictions",
                json={"input": {"prompt": "a fox"}},
                headers={"Authorization": f"Bearer {DEFAULT_API_KEY}", "Prefer": "wait"},
            )
    assert (response.status_code, response.json()["status"], sleep.seconds) == (
        201,
        "starting",
        [60.0],
    )


async def test_the_emulator_refuses_a_wrong_token_and_a_bad_input() -> None:
    with serve(EmulatorApp()) as url:
        async with FluxClient(Replicate("r8_wrong", base_url=url)) as flux:
            with pytest.raises(AuthenticationError, match="authentication token"):
                await flux.generate("a fox")
        async with FluxClient(Replicate(DEFAULT_API_KEY, base_url=url)) as flux:
            with pytest.raises(BadRequestError, match="go_fast"):
                await flux.generate("a fox", extra_body={"go_fast": "yes"})
