"""A call that never sent its body is not maybe billed: its deadline passed while it waited
for a concurrency slot, so the host cannot have started any work for it."""

from __future__ import annotations

from collections.abc import Iterator

import anyio
import httpx
import pytest

from flux_sdk import ConcurrencyLimit, FluxClient, RequestTimeout, Together
from flux_sdk.emulator import DEFAULT_API_KEY, EmulatorApp

from ._server import serve

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with serve(EmulatorApp()) as address:
        yield address


class _Other:
    """Another call, as far as the limit sees it."""

    concurrency: int | None = None


async def test_a_deadline_spent_waiting_for_a_slot_is_not_billed(url: str) -> None:
    limit = ConcurrencyLimit(1)
    provider = Together(DEFAULT_API_KEY, base_url=f"{url}/together")
    held, free = anyio.Event(), anyio.Event()

    async def hold(_call: object) -> httpx.Response:
        held.set()
        await free.wait()
        return httpx.Response(200)

    async with (
        FluxClient(provider, max_concurrency=limit, prices={"together": 1.0}, budget=1.5) as client,
        anyio.create_task_group() as tasks,
    ):
        tasks.start_soon(limit, _Other(), hold)  # type: ignore[arg-type]  # another call holds the slot
        await held.wait()
        with pytest.raises(RequestTimeout) as caught:
            await client.generate("a fox", width=64, height=64, deadline=0.05)
        free.set()
        error = caught.value
        assert error.billed == "no"
        assert error.attempts == 0
        spend = client.ledger.total
        assert spend.attempts == 0
        assert spend.maybe_billed == 0
        assert client.ledger.cost_at_most == 0
        assert client.budget is not None
        assert client.budget.reserved == 0
        assert client.budget.spent == 0
        # The budget was given back: the next call, with the slot free, goes through.
        image = await client.generate("a fox", width=64, height=64)
    assert image.cost == 1.0
