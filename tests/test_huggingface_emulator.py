"""HuggingFace over real loopback HTTP: FluxClient, the provider and the emulator's router.

Every provider behind the router makes its image end to end; fal's queue and Replicate's
predictions live their whole life through the router's prefix (polls moved under it,
failed polls retried without a second submit, cancel on deadline). The client's sleep is
injected, so no test waits for real except the deadline test, 25 times faster.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import pytest

from flux_sdk import (
    AuthenticationError,
    BadRequestError,
    FluxClient,
    FluxEvent,
    HuggingFace,
    InvalidResponseError,
    RequestTimeout,
    Retry,
)
from flux_sdk.emulator import (
    DEFAULT_API_KEY,
    EmulatorApp,
    Fault,
    FaultPlan,
    QueueTiming,
    ReplicateQueue,
    render_png,
)
from flux_sdk.emulator._queue import Jobs

from ._server import serve

pytestmark = pytest.mark.anyio

PROMPT = "a red fox in the snow"
SCHNELL = "black-forest-labs/FLUX.1-schnell"
BEARER = {"authorization": f"Bearer {DEFAULT_API_KEY}"}


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[EmulatorApp, str]]:
    app = EmulatorApp()
    with serve(app) as url:
        yield app, url


@pytest.fixture
def emulator(server: tuple[EmulatorApp, str]) -> tuple[EmulatorApp, str]:
    """The shared server with no jobs, no faults and the default timings."""
    app, url = server
    app.faults = FaultPlan()
    app.queue = QueueTiming()
    app.jobs = Jobs()
    app.replicate = ReplicateQueue()
    return app, url


class Run:
    """One client's view: the waits it was asked for and the events it emitted."""

    def __init__(self) -> None:
        self.waits: list[float] = []
        self.events: list[FluxEvent] = []

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        await anyio.lowlevel.checkpoint()

    def client(self, url: str, *, key: str = DEFAULT_API_KEY, **options: Any) -> FluxClient:
        provider = HuggingFace(key, base_url=url, **options)
        retry = Retry(4, sleep=self.sleep)
        return FluxClient(provider, max_retries=retry, on_event=self.events.append)

    def attempts(self) -> list[tuple[str | None, int | None]]:
        return [(e.step, e.status_code) for e in self.events if e.kind == "attempt"]


@pytest.mark.parametrize(
    ("options", "steps", "attempts"),
    [
        ({}, 2, [("generate", 200)]),
        ({"provider": "together"}, 2, [("generate", 200)]),
        ({"provider": "nscale"}, None, [("generate", 200)]),
        ({"provider": "fal-ai", "queue": False}, 2, [("generate", 200), ("download", 200)]),
        ({"provider": "fal-ai"}, 2, [("submit", 200)] + [("poll", 200)] * 4 + [("download", 200)]),
        # Prefer: wait holds the create until the prediction ends: no poll.
        ({"provider": "replicate"}, 2, [("submit", 201), ("download", 200)]),
    ],
)
async def test_every_provider_draws_the_image_through_the_router(
    emulator: tuple[EmulatorApp, str],
    options: dict[str, Any],
    steps: int | None,
    attempts: list[tuple[str, int]],
) -> None:
    _app, url = emulator
    run = Run()
    async with run.client(url, **options) as flux:
        image = await flux.generate(PROMPT, seed=9, steps=steps, width=1024, height=1024)
    assert image.data == render_png(PROMPT, seed=9, steps=steps or 4, width=1024, height=1024)
    assert image.seed == 9
    name = options.get("provider", "hf-inference")
    assert image.provider == ("huggingface" if name == "hf-inference" else f"huggingface/{name}")
    assert run.attempts() == attempts


async def test_hf_inference_steps_default_to_four_for_schnell(
    emulator: tuple[EmulatorApp, str],
) -> None:
    """The emulator draws hf-inference's own default (28) when no steps are sent."""
    _app, url = emulator
    async with Run().client(url) as flux:
        image = await flux.generate(PROMPT, seed=1)
    assert image.data == render_png(PROMPT, seed=1, steps=4, width=1024, height=1024)


async def test_a_fal_job_through_the_router_survives_failed_polls_with_one_submit(
    emulator: tuple[EmulatorApp, str],
) -> None:
    app, url = emulator
    app.queue = QueueTiming(in_queue=1, in_progress=1)
    app.faults = FaultPlan(
        [
            None,  # submit
            Fault.UNAVAILABLE,  # poll
            Fault.RATE_LIMIT,  # poll: the router's 429, its window in `ratelimit`
            Fault.RESET,  # poll
            None,  # poll: IN_PROGRESS
            None,  # poll: COMPLETED
            Fault.INVALID_JSON,  # result
            None,  # result
            None,  # download (the CDN, not the router)
        ],
        retry_after=0.01,
    )
    run = Run()
    async with run.client(url, provider="fal-ai") as flux:
        image = await flux.generate(PROMPT, seed=3)
    assert image.data == render_png(PROMPT, seed=3, steps=4, width=1024, height=1024)
    assert len(app.jobs) == 1
    assert run.attempts()[:5] == [
        ("submit", 200),
        ("poll", 503),
        ("poll", 429),
        ("poll", None),
        ("poll", 200),
    ]
    assert [step for step, _ in run.attempts()].count("submit") == 1
    assert 0.01 in run.waits  # the 429's wait came from the router's ratelimit header


async def test_the_deadline_cancels_the_fal_job_through_the_router(
    emulator: tuple[EmulatorApp, str],
) -> None:
    app, url = emulator
    app.queue = QueueTiming(in_progress=None)

    async def quick(seconds: float) -> None:  # real waits, 25 times shorter
        await anyio.sleep(seconds / 25)

    events: list[FluxEvent] = []
    provider = HuggingFace(DEFAULT_API_KEY, provider="fal-ai", base_url=url)
    async with FluxClient(
        provider, deadline=0.2, max_retries=Retry(3, sleep=quick), on_event=events.append
    ) as flux:
        with pytest.raises(RequestTimeout, match="deadline"):
            await flux.generate(PROMPT)
    (job,) = app.jobs._jobs.values()
    assert job.cancelled
    steps = [e.step for e in events if e.kind == "attempt"]
    assert (steps[0], steps[-1], steps.count("submit")) == ("submit", "cancel", 1)


async def test_a_replicate_prediction_polls_and_is_cancelled_through_the_router(
    emulator: tuple[EmulatorApp, str],
) -> None:
    app, url = emulator
    app.replicate = ReplicateQueue(starting=2, processing=2, run_seconds=None)  # polls only
    run = Run()
    async with run.client(url, provider="replicate", poll_interval=0.5) as flux:
        image = await flux.generate(PROMPT, seed=4)
    assert image.data == render_png(PROMPT, seed=4, steps=4, width=1024, height=1024)
    assert run.attempts() == [("submit", 201)] + [("poll", 200)] * 4 + [("download", 200)]
    assert run.waits == [0.5] * 4
    (made,) = app.replicate.predictions.values()
    assert made.polls == 4


@pytest.mark.parametrize("provider", ["hf-inference", "together", "fal-ai", "replicate", "nscale"])
async def test_a_wrong_token_is_refused_by_the_router(
    emulator: tuple[EmulatorApp, str], provider: str
) -> None:
    app, url = emulator
    steps = None if provider == "nscale" else 4
    async with Run().client(url, key="hf_wrong", provider=provider) as flux:
        with pytest.raises(AuthenticationError, match="Hugging Face token") as caught:
            await flux.generate(PROMPT, steps=steps)
    assert caught.value.attempts == 1
    assert len(app.jobs) == 0
    assert not app.replicate.predictions


async def test_an_unknown_model_is_a_404_naming_it(emulator: tuple[EmulatorApp, str]) -> None:
    _app, url = emulator
    async with Run().client(url, model="acme/no-such-model") as flux:
        with pytest.raises(BadRequestError, match="acme/no-such-model does not exist"):
            await flux.generate(PROMPT)


async def test_base64_where_image_bytes_belong_is_retried(
    emulator: tuple[EmulatorApp, str],
) -> None:
    app, url = emulator
    app.faults = FaultPlan([Fault.INVALID_BASE64, Fault.HTML])
    run = Run()
    async with run.client(url) as flux:
        image = await flux.generate(PROMPT, seed=2)
    assert image.seed == 2
    assert run.attempts() == [("generate", 200)] * 3
    errors = [e.error for e in run.events if e.kind == "attempt" and e.error is not None]
    assert all(isinstance(error, InvalidResponseError) for error in errors)


# The router as any HTTP client sees it


async def test_hf_inference_route_answers_as_the_router_does(
    emulator: tuple[EmulatorApp, str],
) -> None:
    _app, url = emulator
    route = f"{url}/hf-inference/models/{SCHNELL}"
    body = {"inputs": PROMPT, "parameters": {"num_inference_steps": 2, "seed": 5}}
    async with httpx.AsyncClient(headers=BEARER) as http:
        good = await http.post(route, json=body)
        no_key = await http.post(route, json=body, headers={"authorization": ""})
        bad = await http.post(route, json={"inputs": PROMPT, "parameters": {"seed": -1}})
        empty = await http.post(route, json={"parameters": {}})
        wrong_method = await http.get(route)
        fal_key = await http.post(
            f"{url}/fal-ai/fal-ai/flux/schnell",
            json={"prompt": PROMPT},
            headers={"authorization": f"Key {DEFAULT_API_KEY}"},
        )
    assert good.status_code == 200
    assert good.headers["content-type"] == "image/png"
    assert good.content == render_png(PROMPT, seed=5, steps=2, width=1024, height=1024)
    assert good.headers["ratelimit"] == '"api";r=499;t=300'
    assert good.headers["ratelimit-policy"] == '"fixed window";"api";q=500;w=300'
    assert (no_key.status_code, no_key.json()) == (
        401,
        {"error": "Invalid credentials in Authorization header"},
    )
    assert bad.status_code == 400
    assert "seed" in bad.json()["error"]
    assert empty.status_code == 400
    assert "inputs" in empty.json()["error"]
    assert wrong_method.status_code == 405
    assert fal_key.status_code == 401  # the router takes the token as Bearer only
