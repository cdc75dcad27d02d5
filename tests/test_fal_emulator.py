"""fal over real loopback HTTP: FluxClient, the Fal provider and the emulator's fal routes.

A queued job moves one state per status poll (``QueueTiming``), and the client's sleep
is injected, so a job's whole life runs without waiting: submit, waits, polls (failed
ones retried, never a second submit), the result, the download, and the cancel sent
when the caller's deadline passes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import pytest

from flux_sdk import (
    AuthenticationError,
    Fal,
    FluxClient,
    FluxEvent,
    ProviderError,
    RequestTimeout,
    Retry,
    ServerError,
)
from flux_sdk.emulator import (
    DEFAULT_API_KEY,
    EmulatorApp,
    Fault,
    FaultPlan,
    QueueTiming,
    render_png,
)
from flux_sdk.emulator._queue import Jobs

from ._server import serve

pytestmark = pytest.mark.anyio

PROMPT = "a red fox in the snow"
KEY = {"authorization": f"Key {DEFAULT_API_KEY}"}


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[EmulatorApp, str]]:
    app = EmulatorApp()
    with serve(app) as url:
        yield app, url


@pytest.fixture
def emulator(server: tuple[EmulatorApp, str]) -> tuple[EmulatorApp, str]:
    """The shared server, with no jobs, no faults and the default timing."""
    app, url = server
    app.faults = FaultPlan()
    app.queue = QueueTiming()
    app.jobs = Jobs()
    return app, url


class Run:
    """One client's view: the waits it was asked for and the events it emitted."""

    def __init__(self) -> None:
        self.waits: list[float] = []
        self.events: list[FluxEvent] = []

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        await anyio.lowlevel.checkpoint()

    def client(self, url: str, *, retries: int = 5, **options: Any) -> FluxClient:
        provider = Fal(DEFAULT_API_KEY, base_url=url, **options)
        return FluxClient(
            provider, max_retries=Retry(retries, sleep=self.sleep), on_event=self.events.append
        )

    def attempts(self) -> list[tuple[str | None, int | None]]:
        return [(e.step, e.status_code) for e in self.events if e.kind == "attempt"]


def expected(seed: int, width: int = 1024, height: int = 1024, steps: int = 4) -> bytes:
    return render_png(PROMPT, seed=seed, steps=steps, width=width, height=height)


async def test_a_queued_job_lives_through_submit_polls_result_and_download(
    emulator: tuple[EmulatorApp, str],
) -> None:
    app, url = emulator
    app.queue = QueueTiming(in_queue=2, in_progress=2)
    run = Run()
    async with run.client(url) as flux:
        image = await flux.generate(PROMPT, seed=7, steps=3, width=512, height=256)
    assert image.data == expected(7, 512, 256, steps=3)
    assert image.seed == 7
    assert run.attempts() == [("submit", 200)] + [("poll", 200)] * 6 + [("download", 200)]
    assert run.waits == [0.25, 0.1, 0.1, 0.15, 0.2]
    (job,) = app.jobs._jobs.values()
    assert image.request_id == job.id
    assert (job.polls, job.cancelled) == (5, False)


async def test_failed_polls_results_and_downloads_are_retried_without_a_second_submit(
    emulator: tuple[EmulatorApp, str],
) -> None:
    app, url = emulator
    app.faults = FaultPlan(
        [
            None,  # submit
            Fault.UNAVAILABLE,  # poll
            Fault.RESET,  # poll: answered IN_QUEUE, but the answer is cut off
            Fault.RATE_LIMIT,  # poll
            Fault.SERVER_ERROR,  # poll
            None,  # poll: IN_PROGRESS
            None,  # poll: COMPLETED
            Fault.BAD_GATEWAY,  # result
            Fault.INVALID_JSON,  # result
            None,  # result
            Fault.TRUNCATED,  # download
            None,  # download
        ],
        retry_after=0.01,
    )
    run = Run()
    async with run.client(url, retries=4) as flux:  # four failures of one poll in a row
        image = await flux.generate(PROMPT, seed=3)
    assert image.data == expected(3)
    assert len(app.jobs) == 1
    assert [step for step, _ in run.attempts()].count("submit") == 1
    assert run.attempts()[:6] == [
        ("submit", 200),
        ("poll", 503),
        ("poll", None),
        ("poll", 429),
        ("poll", 500),
        ("poll", 200),
    ]
    assert sum(app.faults.injected.values()) == 7


@pytest.mark.parametrize(
    ("fault", "resent"), [(Fault.UNAVAILABLE, True), (Fault.SERVER_ERROR, False)]
)
async def test_a_submit_is_resent_only_when_fal_refused_it(
    emulator: tuple[EmulatorApp, str], fault: Fault, resent: bool
) -> None:
    """A 503 proves no job was queued; a 500 (even with X-Fal-Retryable) does not."""
    app, url = emulator
    app.faults = FaultPlan([fault])
    run = Run()
    async with run.client(url) as flux:
        if resent:
            await flux.generate(PROMPT)
        else:
            with pytest.raises(ServerError, match="internal_error"):
                await flux.generate(PROMPT)
    submits = [status for step, status in run.attempts() if step == "submit"]
    assert submits == ([int(fault.value), 200] if resent else [500])


async def test_the_deadline_cancels_a_job_that_never_finishes(
    emulator: tuple[EmulatorApp, str],
) -> None:
    """A job still running when the deadline passes is cancelled on fal (PUT cancel_url)."""
    app, url = emulator
    app.queue = QueueTiming(in_progress=None)
    provider = Fal(DEFAULT_API_KEY, base_url=url)

    async def quick(seconds: float) -> None:  # real waits, 25 times shorter
        await anyio.sleep(seconds / 25)

    events: list[FluxEvent] = []
    retry = Retry(3, sleep=quick)
    async with FluxClient(
        provider, deadline=0.2, max_retries=retry, on_event=events.append
    ) as flux:
        with pytest.raises(RequestTimeout, match="deadline"):
            await flux.generate(PROMPT)
    (job,) = app.jobs._jobs.values()
    assert job.cancelled
    assert job.polls >= 1
    steps = [e.step for e in events if e.kind == "attempt"]
    assert (steps[0], steps[-1], steps.count("submit")) == ("submit", "cancel", 1)
    async with httpx.AsyncClient(headers=KEY) as http:
        status = (await http.get(f"{url}/fal-ai/flux/requests/{job.id}/status")).json()
        result = await http.get(f"{url}/fal-ai/flux/requests/{job.id}")
        again = await http.put(f"{url}/fal-ai/flux/requests/{job.id}/cancel")
    assert (status["status"], status["error_type"]) == ("COMPLETED", "client_cancelled")
    assert result.status_code == 499
    assert (again.status_code, again.json()) == (400, {"status": "ALREADY_COMPLETED"})


async def test_a_job_fal_completes_with_an_error_fails_the_call(
    emulator: tuple[EmulatorApp, str],
) -> None:
    """The emulator draws at most 2048 pixels a side: the job completes with an error."""
    _app, url = emulator
    run = Run()
    async with run.client(url) as flux:
        with pytest.raises(ProviderError, match=r"fal failed the job .*2048") as caught:
            await flux.generate(PROMPT, width=4096, height=64)
    assert not caught.value.retryable
    assert [step for step, _ in run.attempts()] == ["submit", "poll", "poll", "poll"]


async def test_sync_mode_posts_once_and_downloads(emulator: tuple[EmulatorApp, str]) -> None:
    _app, url = emulator
    run = Run()
    async with run.client(f"{url}/fal-sync", queue=False) as flux:
        image = await flux.generate(PROMPT, seed=5, extra_body={"image_size": "portrait_16_9"})
    assert image.data == expected(5, 576, 1024)
    assert run.attempts() == [("generate", 200), ("download", 200)]
    assert run.waits == []


async def test_sync_mode_data_uris_need_no_download(emulator: tuple[EmulatorApp, str]) -> None:
    _app, url = emulator
    run = Run()
    async with run.client(f"{url}/fal-sync", queue=False) as flux:
        image = await flux.generate(PROMPT, seed=5, extra_body={"sync_mode": True})
    assert image.data == expected(5)
    assert run.attempts() == [("generate", 200)]


async def test_a_wrong_key_is_refused_on_every_route(emulator: tuple[EmulatorApp, str]) -> None:
    app, url = emulator
    for base, queue in ((url, True), (f"{url}/fal-sync", False)):
        async with FluxClient(Fal("wrong-fal-key", base_url=base, queue=queue)) as flux:
            with pytest.raises(AuthenticationError, match="No user found"):
                await flux.generate(PROMPT)
    assert len(app.jobs) == 0


# The emulator's routes as any HTTP client sees them


async def test_the_queue_routes_answer_as_fal_documents(emulator: tuple[EmulatorApp, str]) -> None:
    app, url = emulator
    app.queue = QueueTiming(in_queue=1, in_progress=0)
    async with httpx.AsyncClient(headers=KEY) as http:
        job = (await http.post(f"{url}/fal-ai/flux-1/schnell", json={"prompt": PROMPT})).json()
        base = f"{url}/fal-ai/flux-1/requests/{job['request_id']}"  # no /schnell
        assert job == {
            "status": "IN_QUEUE",
            "request_id": job["request_id"],
            "response_url": base,
            "status_url": f"{base}/status",
            "cancel_url": f"{base}/cancel",
        }
        early = await http.get(job["response_url"])
        queued = (await http.get(job["status_url"])).json()
        done = (await http.get(job["status_url"] + "?logs=1")).json()
        result = (await http.get(job["response_url"])).json()
        image = await http.get(result["images"][0]["url"], headers={"authorization": ""})
        wrong_method = await http.get(f"{url}/fal-ai/flux/schnell")
        unknown = await http.post(f"{url}/fal-ai/flux/dev", json={"prompt": PROMPT})
        deleted = await http.delete(job["status_url"])
    assert (early.status_code, early.json()) == (400, {"detail": "Request is still in progress"})
    assert (queued["status"], queued["queue_position"]) == ("IN_QUEUE", 0)
    assert (done["status"], done["logs"], done["error"]) == ("COMPLETED", [], None)
    assert result["images"][0] | {"url": ""} == {
        "url": "",
        "width": 1024,
        "height": 768,  # fal's default: landscape_4_3
        "content_type": "image/png",
    }
    assert image.content == render_png(PROMPT, seed=result["seed"], steps=4, width=1024, height=768)
    assert (wrong_method.status_code, wrong_method.json()) == (
        405,
        {"detail": "Method Not Allowed"},
    )
    assert unknown.status_code == 404
    assert (deleted.status_code, deleted.headers["allow"]) == (405, "GET, POST, PUT")
    assert "x-fal-request-id" in unknown.headers


@pytest.mark.parametrize(
    ("query", "logs"),
    [("?logs=1", []), ("?logs=true", []), ("?logs=True", []), ("?logs=false", None),
     ("?logs=0", None), ("", None)],
)  # fmt: skip
async def test_status_logs_are_read_as_fal_client_sends_them(
    emulator: tuple[EmulatorApp, str], query: str, logs: list[Any] | None
) -> None:
    """fal-client asks with ``logs=true``/``false``; flux_sdk and fal's docs with ``1``."""
    app, url = emulator
    app.queue = QueueTiming(in_queue=0, in_progress=1)
    async with httpx.AsyncClient(headers=KEY) as http:
        job = (await http.post(f"{url}/fal-ai/flux/schnell", json={"prompt": PROMPT})).json()
        running = (await http.get(job["status_url"] + query)).json()
    assert (running["status"], running["logs"]) == ("IN_PROGRESS", logs)


async def test_invalid_input_is_a_422_listing_each_field(
    emulator: tuple[EmulatorApp, str],
) -> None:
    _app, url = emulator
    body = {"prompt": PROMPT, "num_inference_steps": 13, "image_size": "huge"}
    async with httpx.AsyncClient(headers=KEY) as http:
        sync = await http.post(f"{url}/fal-sync/fal-ai/flux/schnell", json=body)
        job = (await http.post(f"{url}/fal-ai/flux/schnell", json=body)).json()
        for _ in range(3):
            status = (await http.get(job["status_url"])).json()
        result = await http.get(job["response_url"])
    assert sync.status_code == 422
    assert [e["loc"] for e in sync.json()["detail"]] == [
        ["body", "image_size"],
        ["body", "num_inference_steps"],
    ]
    assert status["status"] == "COMPLETED"
    assert status["error"].startswith("Unprocessable Entity: image_size")
    assert (result.status_code, result.json()) == (422, sync.json())
