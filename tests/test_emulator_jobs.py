"""Queue hosts under a Capacity: a job holds a replica from submit to end, on a test clock.

fal and Replicate are charged per job as the real hosts are: polls, results and downloads
hold no replica and draw no fault, jobs finish with time, and ``/_emulator/stats`` counts
what each host served and billed.
"""

from __future__ import annotations

import contextlib
from typing import Any

import httpx
import pytest

from flux_sdk import Dataoorts, FluxClient, FluxError, Retry
from flux_sdk.emulator import DEFAULT_API_KEY, Capacity, EmulatorApp, Fault, FaultPlan

pytestmark = pytest.mark.anyio

FAL = {"Authorization": f"Key {DEFAULT_API_KEY}"}
REPLICATE = {"Authorization": f"Bearer {DEFAULT_API_KEY}"}
SUBMIT = "/fal-ai/flux/schnell"
CREATE = "/v1/models/black-forest-labs/flux-schnell/predictions"


class Clock:
    """Time that moves only when the test says so."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def app_with(clock: Clock, faults: FaultPlan | None = None, **options: Any) -> EmulatorApp:
    limits = Capacity(clock=clock, **{"replicas": 2, "median": 1.0, **options})
    return EmulatorApp(
        default_size=32, capacity={"fal": limits, "replicate": limits}, faults=faults
    )


def client(app: EmulatorApp) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://emulator")


async def submit(http: httpx.AsyncClient, prompt: str = "a fox") -> httpx.Response:
    body = {"prompt": prompt, "image_size": {"width": 32, "height": 32}}
    return await http.post(SUBMIT, json=body, headers=FAL)


async def status(http: httpx.AsyncClient, job: dict[str, Any]) -> str:
    answer = await http.get(job["status_url"], headers=FAL)
    return str(answer.json()["status"])


async def test_a_fal_job_holds_a_replica_until_it_ends_however_often_it_is_polled() -> None:
    clock = Clock()
    app = app_with(clock)
    async with client(app) as http:
        first, second = (await submit(http, "one")).json(), (await submit(http, "two")).json()
        for _ in range(20):  # polls hold nothing: the replicas stay with the two jobs
            assert await status(http, first) == "IN_PROGRESS"
        assert app.load["fal"].in_service == 2
        refused = await submit(http, "three")
        assert refused.status_code == 429
        assert "retry-after" in refused.headers
        clock.now = 1.0  # the jobs end with time, not with polls
        assert await status(http, second) == "COMPLETED"
        result = (await http.get(first["response_url"], headers=FAL)).json()
        assert (await http.get(result["images"][0]["url"])).status_code == 200
        assert app.load["fal"].in_service == 0
        assert (await submit(http, "three")).status_code == 200
    assert app.load["fal"].requests == 4  # submits only: 2 taken, 1 refused, 1 taken
    assert app.load["fal"].refused == 1


async def test_a_queued_fal_job_starts_when_a_replica_frees_not_when_polled() -> None:
    clock = Clock()
    app = app_with(clock, replicas=1, queue=1)
    async with client(app) as http:
        first, second = (await submit(http, "one")).json(), (await submit(http, "two")).json()
        assert await status(http, second) == "IN_QUEUE"
        clock.now = 1.5  # the first ended at 1.0, so the second has run since then
        assert await status(http, first) == "COMPLETED"
        assert await status(http, second) == "IN_PROGRESS"
        clock.now = 2.0
        assert await status(http, second) == "COMPLETED"


async def test_a_cancelled_fal_job_frees_its_replica_at_once() -> None:
    clock = Clock()
    app = app_with(clock, replicas=1)
    async with client(app) as http:
        job = (await submit(http)).json()
        assert (await http.put(job["cancel_url"], headers=FAL)).status_code == 202
        assert await status(http, job) == "COMPLETED"
        assert (await submit(http, "next")).status_code == 200


async def test_faults_are_drawn_once_per_job_on_its_submit() -> None:
    clock = Clock()
    app = app_with(clock, faults=FaultPlan(rate=1.0, kinds=[Fault.SERVER_ERROR]))
    async with client(app) as http:
        assert (await submit(http)).status_code == 500
        app.faults = FaultPlan([None], rate=1.0, kinds=[Fault.SERVER_ERROR])
        job = (await submit(http, "fine")).json()
        clock.now = 1.0
        assert await status(http, job) == "COMPLETED"  # the polls draw nothing
        assert (await http.get(job["response_url"], headers=FAL)).status_code == 200
    stats = app.stats["fal"]
    assert stats.faults == {"500": 1}
    assert stats.billed == 1
    assert stats.requests == 4


async def test_a_replicate_prediction_moves_with_time_and_holds_its_replica() -> None:
    clock = Clock()
    app = app_with(clock, replicas=1)
    async with client(app) as http:
        created = await http.post(CREATE, json={"input": {"prompt": "a fox"}}, headers=REPLICATE)
        prediction = created.json()
        for _ in range(5):
            polled = await http.get(prediction["urls"]["get"], headers=REPLICATE)
            assert polled.json()["status"] == "processing"
        again = await http.post(CREATE, json={"input": {"prompt": "b"}}, headers=REPLICATE)
        assert again.status_code == 429
        clock.now = 1.0
        done = (await http.get(prediction["urls"]["get"], headers=REPLICATE)).json()
        assert done["status"] == "succeeded"
        assert (await http.get(done["output"][0])).status_code == 200
    assert app.load["replicate"].requests == 2
    assert app.stats["replicate"].billed == 1


async def test_the_stats_endpoint_counts_billed_refused_and_repeated_jobs_by_host() -> None:
    clock = Clock()
    app = app_with(clock, replicas=1)
    async with client(app) as http:
        job = (await submit(http, "same")).json()
        assert (await submit(http, "other")).status_code == 429
        clock.now = 1.0
        assert await status(http, job) == "COMPLETED"
        assert (await submit(http, "same")).status_code == 200  # the same job paid again
        stats = (await http.get("/_emulator/stats")).json()
    fal = stats["hosts"]["fal"]
    assert (fal["billed"], fal["refused"], fal["repeated"], fal["replicas"]) == (2, 1, 1, 1)
    assert fal["requests"] == 4
    assert fal["faults"] == {}
    assert list(stats["hosts"]) == ["fal"]  # hosts never asked of are left out


async def test_a_sync_hosts_billed_count_is_what_its_clients_ledger_may_owe() -> None:
    """A fault after the model ran (a 5xx, an HTML page, a broken body, a cut answer) is
    billed, a 429 is not: the host's count equals the ledger's billed plus maybe billed."""
    faults = [None, Fault.RATE_LIMIT, Fault.SERVER_ERROR, Fault.HTML, Fault.INVALID_JSON]
    app = EmulatorApp(default_size=32, faults=FaultPlan([*faults, Fault.RESET, Fault.UNAVAILABLE]))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as http:
        provider = Dataoorts(DEFAULT_API_KEY, base_url="http://127.0.0.1/api/v1")
        async with FluxClient(provider, http_client=http, max_retries=Retry(0)) as flux:
            for k in range(7):
                with contextlib.suppress(FluxError):
                    await flux.generate(f"a fox number {k}")
            spent = flux.ledger["dataoorts"]
    stats = app.stats["dataoorts"]
    assert stats.billed == 6  # all but the 429
    assert (spent.billed, spent.maybe_billed) == (1, 5)
