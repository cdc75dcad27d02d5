"""Calls spread over routes: cheapest first, balanced by weight, batches, hedges to another host."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import respx

from flux_sdk import FluxEvent, GeneratedImage, Hedge, Retry, Route, ServerError
from flux_sdk._routing import _live

from ._routing import OK, A, B, C, client

pytestmark = pytest.mark.anyio


async def test_cheapest_tries_hosts_in_price_order(router: respx.MockRouter) -> None:
    """routing="cheapest": the lowest price first, then the next, unpriced last."""
    for host in (A, B, C):
        router.post(host.url).respond(503)
    order: list[str] = []
    routes = [Route(A), Route(B, price=0.003), Route(C, price=0.001)]
    retry = Retry(0)
    async with client(
        routes, routing="cheapest", max_retries=retry, on_event=_providers(order)
    ) as flux:
        with pytest.raises(ServerError):
            await flux.generate("a cat")
    assert order == ["gamma", "beta", "alpha"]


def _providers(seen: list[str]) -> Any:
    def hook(event: FluxEvent) -> None:
        if event.kind == "attempt":
            seen.append(event.provider)

    return hook


async def test_balanced_spreads_calls_by_weight(
    router: respx.MockRouter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """routing="balanced" sends work to every healthy host, more to the heavier one,
    when the hosts are alike (the estimates' clock stands still, so a slow moment of a
    loaded machine cannot make one host look slower)."""
    monkeypatch.setattr(_live, "_now", lambda: 1000.0)
    router.post(A.url).mock(return_value=OK)
    router.post(B.url).mock(return_value=OK)
    seen: list[str] = []
    routes = [Route(A, weight=3.0), Route(B, weight=1.0)]
    async with client(routes, routing="balanced", on_event=_providers(seen)) as flux:
        for _ in range(200):
            await flux.generate("a cat")
    assert 100 < seen.count("alpha") < 190
    assert seen.count("beta") > 10


async def test_a_batch_runs_at_the_sum_of_the_route_limits(router: respx.MockRouter) -> None:
    """generate_many over two routes runs as many at once as both take, and uses both."""
    in_flight = {"now": 0, "most": 0}

    async def slow(request: httpx.Request) -> httpx.Response:
        in_flight["now"] += 1
        in_flight["most"] = max(in_flight["most"], in_flight["now"])
        await anyio.sleep(0.01)
        in_flight["now"] -= 1
        return OK

    router.post(A.url).mock(side_effect=slow)
    router.post(B.url).mock(side_effect=slow)
    routes = [Route(A, max_concurrency=2), Route(B, max_concurrency=3)]
    seen: list[str] = []
    async with client(routes, routing="balanced", on_event=_providers(seen)) as flux:
        results = await flux.generate_many([f"cat {i}" for i in range(40)])
    assert all(isinstance(r, GeneratedImage) for r in results)
    assert in_flight["most"] == 5
    assert {"alpha", "beta"} <= set(seen)


async def test_balanced_sends_no_call_to_a_full_host_while_another_has_room(
    router: respx.MockRouter,
) -> None:
    """A host at its limit gets no new call while the other has a free slot: the call
    would wait there for a slot while the other host sat idle (a batch then ran at 0.74x
    of two hosts' capacity)."""
    entered, release = anyio.Event(), anyio.Event()
    held: list[str] = []

    def host(name: str) -> Any:
        async def answer(request: httpx.Request) -> httpx.Response:
            if not held:  # the first request holds its host's only slot
                held.append(name)
                entered.set()
                await release.wait()
            return OK

        return answer

    router.post(A.url).mock(side_effect=host("alpha"))
    router.post(B.url).mock(side_effect=host("beta"))
    routes = [Route(A, max_concurrency=1), Route(B, max_concurrency=1)]
    seen: list[str] = []
    flux = client(routes, routing="balanced", on_event=_providers(seen))
    async with flux, anyio.create_task_group() as group:
        group.start_soon(flux.generate, "the slow one")
        await entered.wait()
        with anyio.fail_after(10):  # a call sent to the full host would wait forever
            for i in range(30):
                await flux.generate(f"cat {i}")
        release.set()
    (full,) = held
    assert seen.count(full) == 1
    assert len(seen) == 31


async def test_a_hedge_goes_to_another_host_and_the_loser_is_cancelled(
    router: respx.MockRouter,
) -> None:
    """After the hedge delay a second host is asked; the first image wins, the slow
    attempt is cancelled and nothing is left running."""
    cancelled = anyio.Event()

    async def stuck(request: httpx.Request) -> httpx.Response:
        try:
            await anyio.sleep_forever()
        finally:
            cancelled.set()
        raise AssertionError("unreachable")

    router.post(A.url).mock(side_effect=stuck)
    router.post(B.url).mock(return_value=OK)
    events: list[FluxEvent] = []
    async with client([A, B], hedge=Hedge(0.01), on_event=events.append) as flux:
        image = await flux.generate("a cat")
        assert cancelled.is_set()
        assert [s.in_flight for s in flux.routes] == [0, 0]
    assert image.provider == "beta"
    assert "hedge" in [e.kind for e in events]


async def test_hedging_is_bounded_to_a_share_of_calls(router: respx.MockRouter) -> None:
    """With max_extra=0.1 (and a burst of 1), 50 slow calls hedge at most 6 times."""

    async def slow(request: httpx.Request) -> httpx.Response:
        await anyio.sleep(0.02)
        return OK

    router.post(A.url).mock(side_effect=slow)
    backup = router.post(B.url).mock(return_value=OK)
    hedge = Hedge(0.001, max_extra=0.1, burst=1.0)
    async with client([A, B], hedge=hedge) as flux:
        for _ in range(50):
            await flux.generate("a cat")
    assert 1 <= backup.call_count <= 6


async def test_the_manifest_records_the_host_of_every_attempt(
    router: respx.MockRouter, tmp_path: Path
) -> None:
    """A batch's manifest says which hosts each item tried, failed items too."""
    router.post(A.url).respond(503)
    router.post(B.url).mock(side_effect=[OK, httpx.Response(400, json={"error": "no"})])
    async with client([A, B], max_retries=Retry(0)) as flux:
        await flux.generate_many(["cat one", "cat two"], save_dir=tmp_path)
    lines = [json.loads(x) for x in (tmp_path / "manifest.jsonl").read_text().splitlines() if x]
    assert sorted(tuple(line["hosts"]) for line in lines) == [("alpha", "beta")] * 2
    assert sorted(line.get("provider") or "" for line in lines) == ["beta", "beta"]


async def test_a_hedged_queue_job_that_loses_is_cancelled_on_its_host(
    router: respx.MockRouter,
) -> None:
    """The slow host's accepted job is cancelled there when the other host's image wins."""
    from .test_flows import JOB, QueueHost, status

    slow = QueueHost(base_url="https://slow.example")
    slow.name = "slow-queue"
    jobs = {k: v.replace("queue.example", "slow.example") for k, v in JOB.items()}
    router.post("https://slow.example/jobs").respond(200, json=jobs)
    router.get(jobs["status_url"]).mock(return_value=status("RUNNING"))
    cancel = router.post(jobs["cancel_url"]).respond(202)
    router.post(B.url).mock(return_value=OK)
    async with client([slow, B], hedge=Hedge(0.02)) as flux:
        image = await flux.generate("a cat")
    # The loser's job held its slot until its cancel (in the background, awaited on
    # closing) was sent: a queue host counts the job until then.
    assert [s.in_flight for s in flux.routes] == [0, 0]
    assert image.provider == "beta"
    assert cancel.call_count == 1
