"""iter_many as a structured scope, and Batch running any generate function."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from flux_sdk import (
    AdaptiveLimit,
    ConfigError,
    GeneratedImage,
    GenerateRequest,
    InvalidRequestError,
    SavedImage,
)
from flux_sdk._batching._batch import Batch
from flux_sdk.emulator import EmulatorApp

from ._batch import SIZE, InFlight, client_for, expected, images_in, manifest

pytestmark = pytest.mark.anyio


async def test_async_for_without_async_with_says_how_to_write_it() -> None:
    """The old spelling fails at once with the new one in the message, sending nothing."""
    app = EmulatorApp(default_size=SIZE)
    async with client_for(app) as client:
        results = client.iter_many(["aa", "bb"])
        with pytest.raises(TypeError, match=r"async with client\.iter_many\(items\) as results"):
            async for _ in results:
                pass
        with pytest.raises(TypeError, match="async with"):
            await results.__anext__()
    assert app.requests_seen == 0


async def test_results_cannot_be_read_after_the_block_nor_entered_twice() -> None:
    """Once the block has ended, reading says why nothing more can come."""
    async with client_for(EmulatorApp(default_size=SIZE), limit=1) as client:
        async with client.iter_many(["aa", "bb", "cc"]) as results:
            first = await results.__anext__()
        assert first[0] == 0
        with pytest.raises(RuntimeError, match="inside their `async with` block"):
            async for _ in results:
                pass
        with pytest.raises(RuntimeError, match="entered once"):
            async with results:
                pass


async def test_an_exception_in_the_body_cancels_the_rest_and_comes_out_as_itself() -> None:
    """The body's own exception, not an ExceptionGroup; nothing left running after it."""
    app = EmulatorApp(default_size=SIZE)
    watch = InFlight()
    async with client_for(app, limit=3, attempt_middleware=[watch]) as client:
        before = len(anyio.get_running_tasks())

        async def fail_in_the_body() -> None:
            async with client.iter_many([f"p{i}" for i in range(100)]) as results:
                async for _ in results:
                    raise ValueError("stop here")

        with pytest.raises(ValueError, match="stop here"):
            await fail_in_the_body()
        assert watch.now == 0
        assert len(anyio.get_running_tasks()) == before
        sent = app.requests_seen
        for _ in range(50):
            await anyio.lowlevel.checkpoint()
        assert app.requests_seen == sent <= 1 + 3 + 3


async def test_an_outer_cancellation_stops_the_batch_with_the_block() -> None:
    """Cancelling the scope around the block stops every worker before the scope ends."""
    app = EmulatorApp(default_size=SIZE)
    watch = InFlight()
    async with client_for(app, limit=3, attempt_middleware=[watch]) as client:
        with anyio.CancelScope() as scope:
            async with client.iter_many([f"p{i}" for i in range(100)]) as results:
                async for _ in results:
                    scope.cancel()
                    await anyio.lowlevel.checkpoint()
        assert scope.cancelled_caught
        assert watch.now == 0
        assert app.requests_seen <= 1 + 3 + 3


async def test_an_image_in_hand_when_the_block_is_left_is_still_saved(tmp_path: Path) -> None:
    """It was paid for: its file and manifest line are written before the block ends."""
    app = EmulatorApp(default_size=SIZE)
    first_received = anyio.Event()
    second_in_hand = anyio.Event()
    async with client_for(app) as client:

        async def generate(request: GenerateRequest, max_retries: int | None) -> GeneratedImage:
            if request.prompt == "second":
                await first_received.wait()
            image = await client.generate(request, max_retries=max_retries)
            if request.prompt == "second":
                second_in_hand.set()
            return image

        batch = Batch(generate, ["first", "second"], limit=2, save_dir=tmp_path)
        async with batch.iterate() as results:
            async for index, _ in results:
                assert index == 0
                first_received.set()
                await second_in_hand.wait()
                break
    assert images_in(tmp_path) == ["000000-first.png", "000001-second.png"]
    assert sorted(line["index"] for line in manifest(tmp_path)) == [0, 1]
    assert (tmp_path / "000001-second.png").read_bytes() == expected("second")


async def test_a_batch_runs_any_generate_function(tmp_path: Path) -> None:
    """A router over two providers runs a batch with the same guarantees as a client."""
    left, right = EmulatorApp(default_size=SIZE), EmulatorApp(default_size=SIZE)
    watch = InFlight()
    seen_retries: set[int | None] = set()
    async with (
        client_for(left, attempt_middleware=[watch]) as one,
        client_for(right, attempt_middleware=[watch]) as two,
    ):

        async def route(request: GenerateRequest, max_retries: int | None) -> GeneratedImage:
            seen_retries.add(max_retries)
            client = one if (request.seed or 0) % 2 == 0 else two
            return await client.generate(request, max_retries=max_retries)

        items = [GenerateRequest(prompt=f"p{i}", seed=i) for i in range(12)]
        batch = Batch(route, items, limit=2, save_dir=tmp_path, keep_images=False, max_retries=1)
        results = await batch.collect()
    assert all(isinstance(r, SavedImage) for r in results)
    assert [r.read_bytes() for r in results if isinstance(r, SavedImage)] == [
        expected(f"p{i}", i) for i in range(12)
    ]
    assert (left.requests_seen, right.requests_seen) == (6, 6)
    assert watch.most == 2  # the batch's limit, across both providers
    assert seen_retries == {1}
    assert batch.progress.done == 12


@pytest.mark.parametrize("limit", [0, -1, True, 1.5, None])
async def test_a_batch_needs_a_positive_worker_count(limit: object) -> None:
    """A limit that cannot run anything is refused before anything runs."""

    async def never(request: GenerateRequest, max_retries: int | None) -> GeneratedImage:
        raise AssertionError("nothing may run")

    with pytest.raises(InvalidRequestError, match="limit must be a whole number >= 1"):
        Batch(never, ["aa"], limit=limit)  # type: ignore[arg-type]


async def test_a_bug_in_the_generate_function_stops_the_batch_and_is_raised_once() -> None:
    """Anything but a FluxError is not an item's failure: the loop raises it."""

    async def broken(request: GenerateRequest, max_retries: int | None) -> GeneratedImage:
        await anyio.lowlevel.checkpoint()
        raise KeyError(request.prompt)

    got: list[tuple[int, object]] = []

    async def read_all() -> None:
        async with Batch(broken, ["aa", "bb", "cc"], limit=2).iterate() as results:
            async for pair in results:
                got.append(pair)

    with pytest.raises(KeyError):
        await read_all()
    assert got == []


async def test_a_closed_client_refuses_iter_many() -> None:
    """As with generate_many, a batch on a closed client fails at once."""
    async with client_for(EmulatorApp()) as client:
        pass
    with pytest.raises(ConfigError, match="closed"):
        client.iter_many(["aa"])


async def test_a_slow_reader_holds_no_more_results_than_the_limit_now() -> None:
    """An adaptive client's ceiling is far above what the host allows: a batch read slowly
    takes new items only as the limit now allows, so memory follows the host, not the
    ceiling (64 here; it would be 64 results waiting, 2 MiB each in real use)."""
    app = EmulatorApp(default_size=SIZE)
    limit = AdaptiveLimit(64, start=3)
    async with client_for(app, limit=limit) as client:  # type: ignore[arg-type]
        held: list[int] = []
        most = limit.limit  # the highest the limit went: items taken under it may wait
        async with client.iter_many([f"p{i}" for i in range(40)]) as results:
            read = 0
            async for _ in results:
                read += 1
                await anyio.wait_all_tasks_blocked()  # every worker as far as it can go
                held.append(app.requests_seen - read)
                most = max(most, limit.limit)
                assert held[-1] <= most < 10
    assert read == 40
    assert max(held) >= 2  # the reader did leave results waiting
