"""generate_many and iter_many: results in place, retries, the concurrency bound, cancellation."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import anyio
import pytest

from flux_sdk import (
    BatchProgress,
    FluxClient,
    GeneratedImage,
    GenerateRequest,
    InvalidRequestError,
    SaveError,
    ServerError,
)
from flux_sdk.emulator import EmulatorApp, Fault, FaultPlan

from ._batch import NAME, SIZE, InFlight, client_for, expected, manifest

pytestmark = pytest.mark.anyio


# --- generate_many -------------------------------------------------------------------


async def test_results_come_back_in_input_order_with_bad_items_in_place() -> None:
    """A bad item is its own InvalidRequestError, sent nowhere; the others still succeed."""
    app = EmulatorApp(default_size=SIZE)
    items: list[Any] = [
        "a red fox",
        "",
        GenerateRequest(prompt="a blue whale", seed=9),
        GenerateRequest(prompt="too many steps", steps=500),
        42,
        "a green frog",
    ]
    async with client_for(app) as client:
        results = await client.generate_many(items)
    assert len(results) == 6
    for index, prompt, seed in (
        (0, "a red fox", None),
        (2, "a blue whale", 9),
        (5, "a green frog", None),
    ):
        image = results[index]
        assert isinstance(image, GeneratedImage)
        assert image.data == expected(prompt, seed)
        assert image.request.prompt == prompt
    for index in (1, 3, 4):
        assert isinstance(results[index], InvalidRequestError)
    assert "item 1" in str(results[1])
    assert "item 4 is int" in str(results[4])
    assert app.requests_seen == 3


async def test_a_failed_item_is_its_error_and_the_rest_still_succeed() -> None:
    """One provider failure does not stop or spoil the batch."""
    app = EmulatorApp(default_size=SIZE, faults=FaultPlan([Fault.UNAVAILABLE]))
    async with client_for(app, limit=1) as client:
        results = await client.generate_many([f"prompt {i}" for i in range(5)])
    assert isinstance(results[0], ServerError)
    assert results[0].status_code == 503
    assert [r.data for r in results[1:] if isinstance(r, GeneratedImage)] == [
        expected(f"prompt {i}") for i in range(1, 5)
    ]


async def test_batch_items_are_retried_like_any_call() -> None:
    """The client's retry policy applies per item; max_retries overrides it for the batch."""
    faults = [Fault.UNAVAILABLE, Fault.RATE_LIMIT, Fault.BAD_GATEWAY]
    app = EmulatorApp(default_size=SIZE, faults=FaultPlan(faults, retry_after=0))
    seen: list[BatchProgress] = []
    async with client_for(app, limit=1, retries=0) as client:
        results = await client.generate_many(["aa", "bb"], max_retries=3, on_progress=seen.append)
    assert [r.data for r in results if isinstance(r, GeneratedImage)] == [
        expected("aa"),
        expected("bb"),
    ]
    assert sum(r.attempts for r in results if isinstance(r, GeneratedImage)) == 5
    progress = BatchProgress(total=2, done=2, retries=3, elapsed=seen[-1].elapsed, concurrency=1)
    assert seen[-1] == progress


async def test_generate_many_never_exceeds_the_concurrency_limit() -> None:
    """However long the batch, at most max_concurrency requests are in flight."""
    watch = InFlight()
    app = EmulatorApp(default_size=SIZE)
    async with client_for(app, limit=3, attempt_middleware=[watch]) as client:
        results = await client.generate_many([f"p{i}" for i in range(60)])
    assert all(isinstance(r, GeneratedImage) for r in results)
    assert watch.most == 3


async def test_gather_of_thousands_of_generate_calls_keeps_the_bound(anyio_backend: str) -> None:
    """asyncio.gather (or a nursery) over 2,000 calls works, with the limit holding."""
    watch = InFlight()
    app = EmulatorApp(default_size=8)
    prompts = [f"prompt {i}" for i in range(2000)]
    async with client_for(app, limit=8, attempt_middleware=[watch]) as client:
        if anyio_backend == "asyncio":
            images = await asyncio.gather(*(client.generate(p) for p in prompts))
        else:
            found: dict[int, GeneratedImage] = {}

            async def one(i: int) -> None:
                found[i] = await client.generate(prompts[i])

            async with anyio.create_task_group() as group:
                for i in range(len(prompts)):
                    group.start_soon(one, i)
            images = [found[i] for i in range(len(prompts))]
    assert [image.request.prompt for image in images] == prompts
    assert watch.most == 8
    assert app.requests_seen == 2000


async def test_progress_is_reported_once_per_item() -> None:
    """on_progress sees every item end, with counts that add up."""
    app = EmulatorApp(default_size=SIZE)
    seen: list[BatchProgress] = []
    async with client_for(app) as client:
        await client.generate_many(["aa", "", "bb", "cc"], on_progress=seen.append)
    assert [p.finished for p in seen] == [1, 2, 3, 4]
    last = seen[-1]
    assert (last.total, last.done, last.failed, last.skipped) == (4, 3, 1, 0)
    assert last.eta == 0


async def test_bad_batch_arguments_fail_before_any_request(tmp_path: Path) -> None:
    """Arguments that cannot work raise InvalidRequestError and send nothing."""
    app = EmulatorApp(default_size=SIZE)
    async with client_for(app) as client:
        with pytest.raises(InvalidRequestError, match="not a single string"):
            await client.generate_many("a single prompt")
        with pytest.raises(InvalidRequestError, match="iterable"):
            await client.generate_many(7)  # type: ignore[call-overload]
        with pytest.raises(InvalidRequestError, match="needs save_dir"):
            await client.generate_many(["aa"], keep_images=False)
        with pytest.raises(InvalidRequestError, match="max_retries"):
            await client.generate_many(["aa"], max_retries=-1)
        with pytest.raises(InvalidRequestError):
            client.iter_many("a single prompt")
        (tmp_path / "file").write_text("not a directory")
        with pytest.raises(SaveError, match="batch directory"):
            await client.generate_many(["aa"], save_dir=tmp_path / "file" / "sub")
    assert app.requests_seen == 0


async def test_an_empty_batch_returns_an_empty_list(tmp_path: Path) -> None:
    """No items, no requests, no error."""
    async with client_for(EmulatorApp()) as client:
        assert await client.generate_many([]) == []
        assert await client.generate_many([], save_dir=tmp_path) == []


# --- iter_many -----------------------------------------------------------------------


async def test_iter_many_yields_every_result_once_with_its_index() -> None:
    """Each item arrives once, paired with its position in the input."""
    prompts = [f"prompt {i}" for i in range(20)]
    async with (
        client_for(EmulatorApp(default_size=SIZE)) as client,
        client.iter_many(prompts) as results,
    ):
        got = {index: result async for index, result in results}
    assert sorted(got) == list(range(20))
    for index, result in got.items():
        assert isinstance(result, GeneratedImage)
        assert result.data == expected(prompts[index])


async def test_iter_many_holds_no_more_results_than_the_concurrency_limit() -> None:
    """A slow consumer slows the batch down instead of piling images up in memory."""
    finished = 0

    def count(event: Any) -> None:
        nonlocal finished
        finished += event.kind == "success"

    consumed = 0
    most_waiting = 0
    async with (
        client_for(EmulatorApp(default_size=SIZE), limit=3, on_event=count) as client,
        client.iter_many([f"p{i}" for i in range(40)]) as results,
    ):
        async for _ in results:
            consumed += 1
            for _ in range(20):  # a consumer that takes its time
                await anyio.lowlevel.checkpoint()
            most_waiting = max(most_waiting, finished - consumed)
    assert consumed == 40
    assert most_waiting <= 3


async def test_breaking_out_of_iter_many_cancels_the_rest(tmp_path: Path) -> None:
    """Leaving the block by break stops every task and request before the next line runs,
    and what was saved is whole, each file with its manifest line."""
    app = EmulatorApp(default_size=SIZE)
    watch = InFlight()
    async with client_for(app, limit=3, attempt_middleware=[watch]) as client:
        before = len(anyio.get_running_tasks())
        async with client.iter_many([f"p{i}" for i in range(200)], save_dir=tmp_path) as results:
            async for _ in results:
                break
        assert watch.now == 0  # no request in flight
        assert len(anyio.get_running_tasks()) == before  # no task left behind
        sent = app.requests_seen
        for _ in range(50):
            await anyio.lowlevel.checkpoint()
        assert app.requests_seen == sent  # and none starts later
    assert sent <= 1 + 3 + 3
    names = os.listdir(tmp_path)
    assert all(NAME.fullmatch(n) or n == "manifest.jsonl" for n in names)
    assert len(manifest(tmp_path)) == len(names) - 1


async def test_an_error_in_the_batch_is_raised_by_the_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """iter_many raises what stopped the batch, after the results that came before."""

    def full(self: GeneratedImage, path: object) -> Path:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(GeneratedImage, "save", full)
    seen: list[int] = []

    async def read_all(client: FluxClient) -> None:
        async with client.iter_many(["aa", "bb"], save_dir=tmp_path) as results:
            async for index, _ in results:
                seen.append(index)

    async with client_for(EmulatorApp(default_size=SIZE)) as client:
        with pytest.raises(SaveError):
            await read_all(client)
    assert seen == []


async def test_a_closed_client_refuses_batches() -> None:
    """Like generate, a batch on a closed client fails at once."""
    async with client_for(EmulatorApp()) as client:
        pass
    from flux_sdk import ConfigError

    with pytest.raises(ConfigError, match="closed"):
        await client.generate_many(["aa"])
