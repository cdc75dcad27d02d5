"""Batches: generate_many, iter_many, saving to a directory, and resuming into it."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from flux_sdk import (
    AttemptMiddleware,
    AttemptNext,
    BatchProgress,
    Call,
    Dataoorts,
    FluxClient,
    FluxError,
    GeneratedImage,
    GenerateRequest,
    InvalidRequestError,
    Retry,
    SavedImage,
    SaveError,
    ServerError,
)
from flux_sdk.emulator import DEFAULT_API_KEY, EmulatorApp, Fault, FaultPlan, render_png

pytestmark = pytest.mark.anyio

SIZE = 32
NAME = re.compile(r"\d{6}-[a-z0-9-]*\.png")


def expected(prompt: str, seed: int | None = None) -> bytes:
    """The emulator's image for a Dataoorts request: the same bytes every time."""
    return render_png(prompt, seed=seed, steps=4, width=SIZE, height=SIZE)


async def no_sleep(seconds: float) -> None:
    await anyio.lowlevel.checkpoint()


class InFlight:
    """Middleware that records the most attempts it ever saw at once."""

    def __init__(self) -> None:
        self.now = 0
        self.most = 0

    async def __call__(self, call: Call, call_next: AttemptNext) -> httpx.Response:
        self.now += 1
        self.most = max(self.most, self.now)
        try:
            await anyio.lowlevel.checkpoint()  # let the others pile up if the limit allows
            return await call_next(call)
        finally:
            self.now -= 1


@asynccontextmanager
async def client_for(
    app: EmulatorApp,
    *,
    limit: int = 4,
    retries: int = 0,
    attempt_middleware: Sequence[AttemptMiddleware] = (),
    **options: Any,
) -> AsyncIterator[FluxClient]:
    """A client that talks to ``app`` in process, retrying without waiting."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as http:
        provider = Dataoorts(api_key=DEFAULT_API_KEY, base_url="http://127.0.0.1/api/v1")
        async with FluxClient(
            provider,
            http_client=http,
            max_concurrency=limit,
            max_retries=Retry(retries, sleep=no_sleep),
            attempt_middleware=attempt_middleware,
            **options,
        ) as client:
            yield client


def manifest(folder: Path) -> list[dict[str, Any]]:
    lines = (folder / "manifest.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line]


def images_in(folder: Path) -> list[str]:
    return sorted(name for name in os.listdir(folder) if name != "manifest.jsonl")


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


# --- saving --------------------------------------------------------------------------


async def test_save_dir_writes_each_image_and_a_manifest_line(tmp_path: Path) -> None:
    """Files are named by index and prompt; the manifest says what each one is."""
    app = EmulatorApp(default_size=SIZE)
    async with client_for(app) as client:
        results = await client.generate_many(
            ["A Red Fox!", GenerateRequest(prompt="whale", seed=3, steps=4)], save_dir=tmp_path
        )
    assert images_in(tmp_path) == ["000000-a-red-fox.png", "000001-whale.png"]
    first = results[0]
    assert isinstance(first, GeneratedImage)
    assert first.path == tmp_path / "000000-a-red-fox.png"
    assert first.path.read_bytes() == first.data == expected("A Red Fox!")
    lines = sorted(manifest(tmp_path), key=lambda line: line["index"])
    whale = lines[1]
    data = expected("whale", 3)
    assert whale["prompt"] == "whale"
    assert (whale["seed"], whale["steps"], whale["provider"]) == (3, 4, "dataoorts")
    assert (whale["file"], whale["bytes"], whale["media_type"]) == (
        "000001-whale.png",
        len(data),
        "image/png",
    )
    assert whale["sha256"] == hashlib.sha256(data).hexdigest()
    assert whale["attempts"] == 1
    assert whale["elapsed"] >= 0
    assert "error" not in whale


async def test_keep_images_false_keeps_only_records(tmp_path: Path) -> None:
    """Without the images in memory, each result says where its file is."""
    async with client_for(EmulatorApp(default_size=SIZE)) as client:
        results = await client.generate_many(["aa", "bb"], save_dir=tmp_path, keep_images=False)
    saved = results[1]
    assert isinstance(saved, SavedImage)
    assert (saved.index, saved.skipped, saved.size) == (1, False, len(expected("bb")))
    assert saved.read_bytes() == expected("bb")
    assert saved.load().data == expected("bb")
    assert "bytes=" in repr(saved)
    assert "request" not in repr(saved)


async def test_failures_get_a_manifest_line_with_the_error(tmp_path: Path) -> None:
    """A failed item's line names the error, so the manifest accounts for every item."""
    app = EmulatorApp(default_size=SIZE, faults=FaultPlan([Fault.UNAVAILABLE]))
    async with client_for(app, limit=1) as client:
        await client.generate_many(["aa", "", "bb"], save_dir=tmp_path)
    lines = {line["index"]: line for line in manifest(tmp_path)}
    assert set(lines) == {0, 1, 2}
    assert lines[0]["error"]["type"] == "ServerError"
    assert lines[0]["error"]["retryable"] is True
    assert lines[0]["error"]["status_code"] == 503
    assert lines[1]["error"]["type"] == "InvalidRequestError"
    assert "error" not in lines[2]
    assert images_in(tmp_path) == ["000002-bb.png"]


@pytest.mark.parametrize(
    "prompt",
    [
        "../../../etc/passwd",
        "/etc/passwd",
        "..\\..\\windows\\system32",
        "CON",
        "nul.txt",
        "x/" * 1000,
        "日本の風景",
        ".hidden",
        "a/b/../c",
    ],
)
async def test_a_prompt_never_leads_a_file_out_of_the_directory(
    tmp_path: Path, prompt: str
) -> None:
    """Whatever the prompt says, the file is a plain short name inside save_dir."""
    folder = tmp_path / "out"
    async with client_for(EmulatorApp(default_size=8)) as client:
        results = await client.generate_many([prompt], save_dir=folder)
    image = results[0]
    assert isinstance(image, GeneratedImage)
    assert image.path is not None
    assert image.path.parent == folder
    assert NAME.fullmatch(image.path.name)
    assert len(image.path.name) <= 51
    assert sorted(os.listdir(tmp_path)) == ["out"]
    assert images_in(folder) == [image.path.name]


# --- resuming ------------------------------------------------------------------------


async def test_a_rerun_skips_finished_items_and_reruns_failed_ones(tmp_path: Path) -> None:
    """The second run pays only for what the first did not finish."""
    prompts = [f"prompt {i}" for i in range(8)]
    app = EmulatorApp(default_size=SIZE, faults=FaultPlan([Fault.UNAVAILABLE, None, Fault.HTML]))
    async with client_for(app, limit=1) as client:
        first = await client.generate_many(prompts, save_dir=tmp_path)
    assert sum(isinstance(r, FluxError) for r in first) == 2
    assert app.requests_seen == 8

    seen: list[BatchProgress] = []
    async with client_for(app, limit=2) as client:
        second = await client.generate_many(prompts, save_dir=tmp_path, on_progress=seen.append)
    assert app.requests_seen == 10
    assert (seen[-1].skipped, seen[-1].done, seen[-1].failed) == (6, 2, 0)
    assert [r.data for r in second if isinstance(r, GeneratedImage)] == [
        expected(p) for p in prompts
    ]
    assert images_in(tmp_path) == [f"{i:06d}-prompt-{i}.png" for i in range(8)]


async def test_a_rerun_with_keep_images_false_marks_skipped_items(tmp_path: Path) -> None:
    """Skipped items come back as records that say so."""
    async with client_for(EmulatorApp(default_size=SIZE)) as client:
        await client.generate_many(["aa", "bb"], save_dir=tmp_path)
        again = await client.generate_many(["aa", "bb"], save_dir=tmp_path, keep_images=False)
    assert all(isinstance(r, SavedImage) and r.skipped for r in again)


async def test_a_damaged_or_missing_file_is_generated_again(tmp_path: Path) -> None:
    """An item is skipped only if its file still has the hash the manifest recorded."""
    prompts = ["aa", "bb", "cc"]
    app = EmulatorApp(default_size=SIZE)
    async with client_for(app) as client:
        await client.generate_many(prompts, save_dir=tmp_path)
        (tmp_path / "000000-aa.png").write_bytes(b"\x89PNG truncated")
        (tmp_path / "000002-cc.png").unlink()
        results = await client.generate_many(prompts, save_dir=tmp_path)
    assert app.requests_seen == 5
    assert (tmp_path / "000000-aa.png").read_bytes() == expected("aa")
    assert [r.data for r in results if isinstance(r, GeneratedImage)] == [
        expected(p) for p in prompts
    ]


async def test_a_changed_item_is_generated_again_and_replaces_the_old_file(
    tmp_path: Path,
) -> None:
    """Same index, different request: not skipped, and one file per index remains."""
    app = EmulatorApp(default_size=SIZE)
    async with client_for(app) as client:
        await client.generate_many(["a cat", "a dog"], save_dir=tmp_path)
        await client.generate_many(
            ["a cat", GenerateRequest(prompt="a dog", seed=1)], save_dir=tmp_path
        )
        await client.generate_many(["a cat", "a wolf"], save_dir=tmp_path)
    assert app.requests_seen == 4
    assert images_in(tmp_path) == ["000000-a-cat.png", "000001-a-wolf.png"]


async def test_leftovers_of_a_crash_are_cleaned_up(tmp_path: Path) -> None:
    """A temp file and a half-written manifest line from a killed run do no harm."""
    async with client_for(EmulatorApp(default_size=SIZE)) as client:
        await client.generate_many(["aa"], save_dir=tmp_path)
        with (tmp_path / "manifest.jsonl").open("a") as file:
            file.write('{"index": 1, "key": "dead')  # the process died mid-line
        (tmp_path / ".000001-bb.png.0badcafe.tmp").write_bytes(b"half an image")
        (tmp_path / "notes.txt").write_text("the user's own file")
        await client.generate_many(["aa", "bb"], save_dir=tmp_path)
    assert sorted(os.listdir(tmp_path)) == [
        "000000-aa.png",
        "000001-bb.png",
        "manifest.jsonl",
        "notes.txt",
    ]
    lines = (tmp_path / "manifest.jsonl").read_text().splitlines()
    assert lines[1] == '{"index": 1, "key": "dead'  # kept, on a line of its own
    assert [json.loads(line)["index"] for line in lines[:1] + lines[2:]] == [0, 1]


async def test_a_manifest_line_never_points_outside_the_directory(tmp_path: Path) -> None:
    """A tampered manifest cannot make a re-run read or delete other files."""
    outside = tmp_path / "secret.png"
    outside.write_bytes(expected("aa"))
    folder = tmp_path / "batch"
    folder.mkdir()
    request = GenerateRequest(prompt="aa")
    from flux_sdk._batching._batch import request_key

    line = {
        "index": 0,
        "key": request_key(request),
        "file": "../secret.png",
        "sha256": hashlib.sha256(expected("aa")).hexdigest(),
    }
    (folder / "manifest.jsonl").write_text(json.dumps(line) + "\n")
    app = EmulatorApp(default_size=SIZE)
    async with client_for(app) as client:
        await client.generate_many([request], save_dir=folder)
    assert app.requests_seen == 1
    assert outside.read_bytes() == expected("aa")
    assert images_in(folder) == ["000000-aa.png"]


async def test_two_batches_cannot_write_one_directory_at_once(tmp_path: Path) -> None:
    """The second gets a SaveError before sending anything; the first is unharmed."""
    app = EmulatorApp(default_size=SIZE)
    async with (
        client_for(app, limit=1) as client,
        client.iter_many(["aa", "bb"], save_dir=tmp_path) as first,
    ):
        index, _ = await first.__anext__()
        with pytest.raises(SaveError, match="another batch is writing"):
            await client.generate_many(["cc"], save_dir=tmp_path)
        rest = [pair async for pair in first]
    assert {index, *(i for i, _ in rest)} == {0, 1}
    assert app.requests_seen == 2


async def test_a_disk_error_stops_the_batch_with_a_save_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When images cannot be written, the batch stops instead of paying for more."""

    def full(self: GeneratedImage, path: object) -> Path:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(GeneratedImage, "save", full)
    app = EmulatorApp(default_size=SIZE)
    async with client_for(app, limit=2) as client:
        with pytest.raises(SaveError, match="No space left") as caught:
            await client.generate_many([f"p{i}" for i in range(50)], save_dir=tmp_path)
    assert caught.value.errno == 28
    assert isinstance(caught.value, OSError)
    assert app.requests_seen <= 4


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
