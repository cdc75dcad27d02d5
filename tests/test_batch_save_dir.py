"""Batches saved to a directory: images, manifest lines, and re-runs resuming into it."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from flux_sdk import (
    BatchProgress,
    FluxError,
    GeneratedImage,
    GenerateRequest,
    SavedImage,
    SaveError,
)
from flux_sdk.emulator import EmulatorApp, Fault, FaultPlan

from ._batch import NAME, SIZE, client_for, expected, images_in, manifest

pytestmark = pytest.mark.anyio


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
