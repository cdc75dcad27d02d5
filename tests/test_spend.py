"""The ledger, prices and budgets: what a client spends, and the most it may spend."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from flux_sdk import (
    Baseten,
    BudgetExceeded,
    ConfigError,
    Emulator,
    FluxClient,
    FluxError,
    GeneratedImage,
    GenerateRequest,
    Price,
    Retry,
    Route,
    SavedImage,
)
from flux_sdk.emulator import EmulatorApp, Fault, FaultPlan

from ._sleeps import Sleeps

pytestmark = pytest.mark.anyio

PRICE = 0.0012


def _client(app: EmulatorApp | None = None, **options: Any) -> FluxClient:
    options.setdefault("prices", {"emulator": PRICE})
    return FluxClient(
        Emulator(app=app), max_retries=Retry(3, sleep=Sleeps()), max_concurrency=4, **options
    )


async def test_the_ledger_adds_up_a_scripted_host() -> None:
    """Script: ok; 500 then ok; 429 then ok; HTML, HTML, HTML, HTML (fails after 4)."""
    plan = FaultPlan(
        [None, Fault.SERVER_ERROR, None, Fault.RATE_LIMIT, None, *[Fault.HTML] * 4],
        retry_after=0,
    )
    async with _client(EmulatorApp(faults=plan)) as flux:
        for _ in range(3):
            await flux.generate("a fox")
        with pytest.raises(FluxError) as caught:
            await flux.generate("a fox")
    spend = flux.ledger["emulator"]
    assert (spend.calls, spend.images, spend.attempts) == (4, 3, 9)
    assert (spend.billed, spend.maybe_billed) == (3, 5)  # three images; a 500, four pages
    assert spend.cost == pytest.approx(3 * PRICE)
    assert spend.cost_at_most == pytest.approx(8 * PRICE)
    assert caught.value.cost == pytest.approx(4 * PRICE)
    assert caught.value.billed == "maybe"
    assert flux.ledger.total.cost_at_most == spend.cost_at_most
    assert flux.ledger.summary() == (
        "spent USD 0.0036 (at most USD 0.0096: 5 attempts may have been billed) for 3 images"
    )


def test_prices_by_size_and_steps() -> None:
    fal = Price(per_megapixel=0.003)
    assert fal.cost(GenerateRequest(prompt="a", width=1024, height=768)) == 0.003
    assert fal.cost(GenerateRequest(prompt="a", width=1024, height=1024)) == 0.003
    assert fal.cost(GenerateRequest(prompt="a", width=1280, height=1024)) == 0.006
    cloudflare = Price(per_tile=0.0000528, per_step=0.0001056)
    assert cloudflare.cost(GenerateRequest(prompt="a")) == pytest.approx(0.0006336)
    with pytest.raises(ConfigError, match="per_image"):
        Price(per_image=-1)


async def test_a_route_price_and_prices_override_the_list_price() -> None:
    async with FluxClient(
        [Route(Emulator(), price=0.01)], max_retries=Retry(0, sleep=Sleeps())
    ) as flux:
        image = await flux.generate("a fox")
    assert image.cost == 0.01
    assert flux.ledger["emulator"].cost == 0.01
    async with FluxClient(Emulator(), prices={"emulator": Price(per_image=0.5)}) as flux:
        assert (await flux.generate("a fox")).cost == 0.5
    with pytest.raises(ConfigError, match="not a provider of this client"):
        FluxClient(Emulator(), prices={"fal": 0.1})


def test_a_budget_needs_a_price_for_every_host() -> None:
    with pytest.raises(ConfigError, match=r"budget= needs a price for baseten.*prices="):
        FluxClient(Baseten("k", base_url="https://example.invalid"), budget=1.0)
    with pytest.raises(ConfigError, match="budget must be a finite number"):
        FluxClient(Emulator(), budget=float("nan"))


async def test_a_client_budget_stops_the_attempt_that_could_pass_it() -> None:
    plan = FaultPlan([None, Fault.SERVER_ERROR], retry_after=0)
    async with _client(EmulatorApp(faults=plan), budget=2 * PRICE) as flux:
        await flux.generate("a fox")
        # The 500 may have been billed, so no retry fits: it is not sent.
        with pytest.raises(BudgetExceeded) as caught:
            await flux.generate("a fox")
        assert caught.value.retryable is False
        assert caught.value.attempts == 1
        assert caught.value.billed == "maybe"
        assert flux.budget is not None
        assert flux.budget.spent == pytest.approx(2 * PRICE)
        with pytest.raises(BudgetExceeded, match=r"would pass the budget of USD 0\.0024"):
            await flux.generate("a fox")
    assert plan.requests == 2  # nothing sent past the budget
    assert flux.ledger.cost_at_most == pytest.approx(2 * PRICE)


async def test_refusals_give_their_reservation_back() -> None:
    plan = FaultPlan([Fault.RATE_LIMIT, Fault.RATE_LIMIT, None], retry_after=0)
    async with _client(EmulatorApp(faults=plan), budget=PRICE) as flux:
        image = await flux.generate("a fox")
    assert image.attempts == 3
    assert image.cost == PRICE


async def test_a_batch_stops_exactly_at_its_budget_and_resumes(tmp_path: Path) -> None:
    prompts = [f"fox number {i}" for i in range(12)]
    out = tmp_path / "out"
    app = EmulatorApp()
    async with _client(app) as flux:
        first = await flux.generate_many(prompts, save_dir=out, keep_images=False, budget=0.006)
    made = [r for r in first if isinstance(r, SavedImage)]
    stopped = [r for r in first if isinstance(r, BudgetExceeded)]
    assert len(made) == 5
    assert len(stopped) == 7
    assert all(r.attempts == 0 for r in stopped)
    assert flux.ledger.cost_at_most == pytest.approx(0.006)
    lines = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert len(lines) == 5
    assert all(line["cost"] == PRICE for line in lines)

    async with _client(app) as flux:
        second = await flux.generate_many(prompts, save_dir=out, keep_images=False, budget=0.01)
    assert sum(isinstance(r, SavedImage) and r.skipped for r in second) == 5
    assert sum(isinstance(r, SavedImage) and not r.skipped for r in second) == 7
    assert flux.ledger.cost == pytest.approx(7 * PRICE)


async def test_a_batch_budget_in_memory_keeps_results_in_order() -> None:
    async with _client() as flux:
        results = await flux.generate_many(["aa", "bb", "cc", "dd"], budget=2 * PRICE)
        with pytest.raises(ConfigError, match="batch's budget"):
            await flux.generate_many(["aa"], budget=-1)
    assert [type(r).__name__ for r in results].count("GeneratedImage") == 2
    assert all(isinstance(r, (GeneratedImage, BudgetExceeded)) for r in results)
