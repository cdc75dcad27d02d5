"""What a re-run trusts in a batch directory, and what it never touches (issue 11)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from flux_sdk import (
    BatchProgress,
    Call,
    CallNext,
    FluxError,
    GeneratedImage,
    GenerateRequest,
    SavedImage,
)
from flux_sdk._batching._manifest import request_key
from flux_sdk.emulator import EmulatorApp, Fault, FaultPlan

from ._batch import SIZE, client_for, expected, images_in

pytestmark = pytest.mark.anyio


def line_for(position: int, prompt: str, **fields: Any) -> dict[str, Any]:
    """A manifest line as a run writes it for a successful item; ``fields`` override."""
    data = expected(prompt)
    line: dict[str, Any] = {
        "index": position,
        "key": request_key(GenerateRequest(prompt=prompt)),
        "prompt": prompt,
        "seed": None,
        "steps": None,
        "provider": "dataoorts",
        "file": f"{position:06d}-{prompt}.png",
        "sha256": hashlib.sha256(data).hexdigest(),
        "bytes": len(data),
        "media_type": "image/png",
        "attempts": 1,
        "elapsed": 0.1,
        "request_id": None,
    }
    line.update(fields)
    return line


def write_manifest(folder: Path, *lines: dict[str, Any] | bytes) -> None:
    raw = [x if isinstance(x, bytes) else json.dumps(x).encode() for x in lines]
    (folder / "manifest.jsonl").write_bytes(b"".join(line + b"\n" for line in raw))


async def test_a_line_naming_another_items_file_neither_skips_nor_deletes(
    tmp_path: Path,
) -> None:
    """Item 0's line points at item 1's file, with that file's hash: item 0 runs again,
    and both real files survive with their own bytes."""
    app = EmulatorApp(default_size=SIZE)
    async with client_for(app) as client:
        await client.generate_many(["aa", "bb"], save_dir=tmp_path)
        bb = line_for(1, "bb")
        write_manifest(tmp_path, {**bb, "index": 0, "key": line_for(0, "aa")["key"]}, bb)
        results = await client.generate_many(["aa", "bb"], save_dir=tmp_path)
    assert app.requests_seen == 3  # aa again; bb skipped
    aa = results[0]
    assert isinstance(aa, GeneratedImage)
    assert aa.path == tmp_path / "000000-aa.png"
    assert aa.data == expected("aa")
    assert images_in(tmp_path) == ["000000-aa.png", "000001-bb.png"]
    assert (tmp_path / "000000-aa.png").read_bytes() == expected("aa")
    assert (tmp_path / "000001-bb.png").read_bytes() == expected("bb")


@pytest.mark.parametrize(
    "change",
    [
        {"index": True},
        {"index": 0.0},
        {"index": "0"},
        {"index": -1},
        {"index": 10**30},
        {"index": 7},
        {"sha256": 5},
        {"sha256": ["not", "a", "hash"]},
        {"sha256": "ABC"},
        {"file": "sub/000000-aa.png"},
        {"file": "../000000-aa.png"},
        {"file": "000000-aa.png/."},
        {"file": "000000-other.png"},
        {"file": "0000000-aa.png"},
        {"file": "000000-aa.jpg"},
        {"file": None},
        {"bytes": 3},
        {"bytes": "70"},
        {"key": None},
        {"error": {"type": "ServerError"}},
    ],
    ids=repr,
)
async def test_a_hand_edited_line_makes_its_item_run_again_and_harms_nothing(
    tmp_path: Path, change: dict[str, Any]
) -> None:
    """Every decoy file survives; only the item's own file is rewritten."""
    decoys = {
        "0000000-aa.png": expected("aa"),  # seven digits: not a name a batch writes
        "000000-other.png": expected("aa"),  # index 0, another slug: a stale file of ours
        "000000-aa.jpg": expected("aa"),
        "000007-zz.png": expected("aa"),  # an index beyond this batch
        "sub/000000-aa.png": expected("aa"),
    }
    (tmp_path / "sub").mkdir()
    (tmp_path / "000000-aa.png").write_bytes(expected("aa"))
    for name, data in decoys.items():
        (tmp_path / name).write_bytes(data)
    write_manifest(tmp_path, line_for(0, "aa", **change))
    app = EmulatorApp(default_size=SIZE)
    async with client_for(app) as client:
        results = await client.generate_many(["aa"], save_dir=tmp_path)
    assert app.requests_seen == 1
    assert isinstance(results[0], GeneratedImage)
    assert results[0].path == tmp_path / "000000-aa.png"
    assert (tmp_path / "000000-aa.png").read_bytes() == expected("aa")
    # Stale files of index 0 under another name go (one file per item); nothing else.
    assert images_in(tmp_path) == sorted(
        ["000000-aa.png", "000007-zz.png", "0000000-aa.png", "sub"]
    )
    assert (tmp_path / "sub" / "000000-aa.png").read_bytes() == expected("aa")


async def test_the_last_line_of_an_item_decides(tmp_path: Path) -> None:
    """Duplicates of a good line still skip; a later bad line makes the item run again."""
    (tmp_path / "000000-aa.png").write_bytes(expected("aa"))
    (tmp_path / "000001-bb.png").write_bytes(expected("bb"))
    good_aa, good_bb = line_for(0, "aa"), line_for(1, "bb")
    write_manifest(tmp_path, good_aa, good_aa, good_bb, {**good_bb, "sha256": "0" * 64})
    app = EmulatorApp(default_size=SIZE)
    async with client_for(app) as client:
        results = await client.generate_many(["aa", "bb"], save_dir=tmp_path, keep_images=False)
    assert app.requests_seen == 1
    assert [r.skipped for r in results if isinstance(r, SavedImage)] == [True, False]


async def test_garbage_lines_are_ignored_and_good_ones_still_count(tmp_path: Path) -> None:
    """Bytes that are not UTF-8, absurd nesting, NaN, non-objects: none stops a re-run."""
    (tmp_path / "000000-aa.png").write_bytes(expected("aa"))
    write_manifest(
        tmp_path,
        b"\xff\xfe\x00garbage \xc3\x28",
        b"[" * 100_000,
        b'{"index": NaN}',
        b'{"index": 1' + b"0" * 5000 + b"}",
        b"[1, 2, 3]",
        b'"just a string"',
        line_for(0, "aa"),
        b'{"index": 1, "key": "dead',
    )
    app = EmulatorApp(default_size=SIZE)
    seen: list[BatchProgress] = []
    async with client_for(app) as client:
        results = await client.generate_many(
            ["aa", "bb"], save_dir=tmp_path, keep_images=False, on_progress=seen.append
        )
    assert app.requests_seen == 1
    assert [type(r) for r in results] == [SavedImage, SavedImage]
    assert (seen[-1].skipped, seen[-1].done) == (1, 1)
    last_line = (tmp_path / "manifest.jsonl").read_bytes().splitlines()[-1]
    assert json.loads(last_line)["index"] == 1  # appended on a line of its own


async def test_a_skipped_records_fields_come_from_the_checked_file(tmp_path: Path) -> None:
    """A trusted line's odd extra fields do not leak into the result as nonsense."""
    (tmp_path / "000000-aa.png").write_bytes(expected("aa"))
    odd = line_for(
        0, "aa", media_type="text/html", attempts=-3, elapsed="soon", provider=7, seed=True
    )
    write_manifest(tmp_path, odd)
    async with client_for(EmulatorApp(default_size=SIZE)) as client:
        results = await client.generate_many(["aa"], save_dir=tmp_path, keep_images=False)
    saved = results[0]
    assert isinstance(saved, SavedImage)
    assert saved.skipped
    assert (saved.media_type, saved.attempts, saved.elapsed) == ("image/png", 1, 0.0)
    assert (saved.provider, saved.seed) == ("unknown", None)
    assert saved.load().data == expected("aa")


async def test_files_are_named_by_the_batchs_own_prompt(tmp_path: Path) -> None:
    """Middleware that rewrites the prompt does not change the file's name, so a re-run
    finds the file and skips it."""

    async def rewrite(call: Call, call_next: CallNext) -> GeneratedImage:
        call.request = call.request.replace(prompt=call.request.prompt + " 4k")
        return await call_next(call)

    app = EmulatorApp(default_size=SIZE)
    async with client_for(app, middleware=[rewrite]) as client:
        await client.generate_many(["aa"], save_dir=tmp_path)
        again = await client.generate_many(["aa"], save_dir=tmp_path, keep_images=False)
    assert images_in(tmp_path) == ["000000-aa.png"]
    assert app.requests_seen == 1
    assert isinstance(again[0], SavedImage)
    assert again[0].skipped


async def test_final_progress_agrees_with_the_results(tmp_path: Path) -> None:
    """done, skipped and failed count exactly what the results list holds; retries and
    the rate count this run only."""
    prompts = [f"p{i}" for i in range(6)]
    faults = FaultPlan([Fault.UNAVAILABLE, None, Fault.UNAVAILABLE, Fault.UNAVAILABLE])
    app = EmulatorApp(default_size=SIZE, faults=faults)
    async with client_for(app, limit=1, retries=1) as client:
        await client.generate_many([*prompts[:4], ""], save_dir=tmp_path)
        seen: list[BatchProgress] = []
        results = await client.generate_many(
            [*prompts[:4], "", "p5"], save_dir=tmp_path, keep_images=False, on_progress=seen.append
        )
    last = seen[-1]
    skipped = [r for r in results if isinstance(r, SavedImage) and r.skipped]
    done = [r for r in results if isinstance(r, SavedImage) and not r.skipped]
    failed = [r for r in results if isinstance(r, FluxError)]
    assert (last.skipped, last.done, last.failed) == (len(skipped), len(done), len(failed))
    assert (last.total, last.finished, last.remaining) == (6, 6, 0)
    assert last.retries == sum(r.attempts - 1 for r in done) + sum(r.attempts - 1 for r in failed)
    assert any(r.attempts > 1 for r in skipped)  # earlier retries are not counted again
    assert last.rate == pytest.approx(len(done) / last.elapsed)
    assert [p.finished for p in seen] == [1, 2, 3, 4, 5, 6]


def test_rate_and_eta_leave_skipped_items_out() -> None:
    """Skipped items add neither to the rate nor to the time the rest will take."""
    p = BatchProgress(total=20, done=4, skipped=10, failed=1, elapsed=5.0)
    assert p.rate == pytest.approx(0.8)
    assert p.remaining == 5
    assert p.eta == pytest.approx(5 * 5.0 / 5)
    assert BatchProgress(total=3, skipped=3, elapsed=1.0).eta is None
    assert BatchProgress(total=3, skipped=3, elapsed=1.0).rate == 0.0
