"""Several workers filling one batch directory with ``shard=(k, W)`` (issue 22)."""

from __future__ import annotations

import os
from pathlib import Path

import anyio
import pytest

from flux_sdk import FluxError, InvalidRequestError, SavedImage, SaveError, iter_results
from flux_sdk._batching._manifest import BatchDirectory
from flux_sdk.emulator import EmulatorApp, Fault, FaultPlan

from ._batch import SIZE, client_for

pytestmark = pytest.mark.anyio

PROMPTS = [f"item {i}" for i in range(10)]


def images(folder: Path) -> list[str]:
    return sorted(name for name in os.listdir(folder) if name.endswith(".png"))


async def test_shards_fill_one_directory_with_the_batchs_own_indices(tmp_path: Path) -> None:
    app = EmulatorApp(default_size=SIZE)
    found: dict[int, list[object]] = {}
    async with client_for(app) as client:

        async def worker(k: int) -> None:
            found[k] = list(await client.generate_many(PROMPTS, save_dir=tmp_path, shard=(k, 3)))

        async with anyio.create_task_group() as group:
            for k in range(3):  # all at once: none is refused as "another batch"
                group.start_soon(worker, k)
    assert [len(found[k]) for k in range(3)] == [4, 3, 3]
    assert all(not isinstance(r, FluxError) for rs in found.values() for r in rs)
    assert images(tmp_path) == [f"{i:06d}-item-{i}.png" for i in range(10)]
    assert sorted(n for n in os.listdir(tmp_path) if n.startswith("manifest-")) == [
        f"manifest-{k}-of-3.jsonl" for k in range(3)
    ]
    records = list(iter_results(tmp_path))
    assert [r["index"] for r in records] == list(range(10))
    assert [r["prompt"] for r in records] == PROMPTS
    assert app.requests_seen == 10  # every index sent once


async def test_a_rerun_reads_every_shards_manifest_as_one_batch(tmp_path: Path) -> None:
    app = EmulatorApp(default_size=SIZE)
    async with client_for(app) as client:
        for k in range(2):
            await client.generate_many(PROMPTS, save_dir=tmp_path, shard=(k, 2))
        again = await client.generate_many(PROMPTS, save_dir=tmp_path, keep_images=False)
    assert app.requests_seen == 10  # the unsharded re-run paid for nothing
    assert all(isinstance(r, SavedImage) and r.skipped for r in again)


async def test_a_shards_results_are_its_items_in_index_order(tmp_path: Path) -> None:
    app = EmulatorApp(default_size=SIZE)
    async with client_for(app) as client:
        results = await client.generate_many(PROMPTS, shard=(1, 4))
        async with client.iter_many(PROMPTS, shard=(2, 4)) as stream:
            indices = sorted([index async for index, _ in stream])
    assert [r.request.prompt for r in results if not isinstance(r, FluxError)] == [
        "item 1",
        "item 5",
        "item 9",
    ]
    assert indices == [2, 6]


@pytest.mark.parametrize("shard", [(2, 2), (-1, 2), (0, 0), (0.0, 1), [0, 1], (True, 2)])
async def test_a_shard_that_is_not_k_of_w_is_refused(tmp_path: Path, shard: object) -> None:
    async with client_for(EmulatorApp(default_size=SIZE)) as client:
        with pytest.raises(InvalidRequestError, match="k modulo W"):
            await client.generate_many(PROMPTS, shard=shard)  # type: ignore[call-overload]


def test_one_shard_twice_or_an_unsharded_run_beside_shards_is_refused(tmp_path: Path) -> None:
    first = BatchDirectory(tmp_path, 10, (0, 2))
    try:
        other = BatchDirectory(tmp_path, 10, (1, 2))  # a different shard runs alongside
        other.close()
        with pytest.raises(SaveError, match="another batch is writing"):
            BatchDirectory(tmp_path, 10, (0, 2))
        with pytest.raises(SaveError, match="another batch is writing"):
            BatchDirectory(tmp_path, 10)
    finally:
        first.close()
    BatchDirectory(tmp_path, 10).close()  # once the shards are done, it may


def test_a_starting_shard_leaves_another_shards_files_alone(tmp_path: Path) -> None:
    theirs = tmp_path / ".000001-item-1.png.0123abcd.tmp"  # shard 1 is writing it now
    mine = tmp_path / ".000000-item-0.png.0123abcd.tmp"  # shard 0's, left by a crash
    theirs.write_bytes(b"half")
    mine.write_bytes(b"half")
    BatchDirectory(tmp_path, 10, (0, 2)).close()
    assert theirs.exists()
    assert not mine.exists()


@pytest.mark.parametrize(
    ("held", "other", "refused"),
    [
        ((0, 2), (0, 4), True),  # 0, 4, 8 ... are in both
        ((0, 2), (2, 4), True),
        ((1, 3), (4, 6), True),  # 4 and 10 are 1 modulo 3
        ((0, 2), (1, 4), False),  # even and odd never meet
        ((0, 3), (1, 3), False),
    ],
)
def test_shards_of_another_width_that_share_an_index_are_refused(
    tmp_path: Path, held: tuple[int, int], other: tuple[int, int], refused: bool
) -> None:
    """Two runs that would write the same index never run at once, whatever their W."""
    first = BatchDirectory(tmp_path, 12, held)
    try:
        if refused:
            with pytest.raises(SaveError, match="another batch is writing"):
                BatchDirectory(tmp_path, 12, other)
        else:
            BatchDirectory(tmp_path, 12, other).close()
    finally:
        first.close()
    BatchDirectory(tmp_path, 12, other).close()  # once the first has ended


async def test_an_image_another_layout_made_is_not_paid_again_after_an_older_failure(
    tmp_path: Path,
) -> None:
    """Shard 0 of 2 failed item 0; a whole run then made it; shard 0 run again skips it:
    its own manifest's older failure does not hide the image another manifest records."""
    app = EmulatorApp(default_size=SIZE, faults=FaultPlan([Fault.SERVER_ERROR]))
    async with client_for(app) as client:
        first = await client.generate_many(PROMPTS[:2], save_dir=tmp_path, shard=(0, 2))
        assert isinstance(first[0], FluxError)
        await client.generate_many(PROMPTS[:2], save_dir=tmp_path)  # makes item 0 (and 1)
        assert app.requests_seen == 3
        again = await client.generate_many(
            PROMPTS[:2], save_dir=tmp_path, shard=(0, 2), keep_images=False
        )
    assert app.requests_seen == 3  # nothing paid for twice
    assert isinstance(again[0], SavedImage)
    assert again[0].skipped


async def test_iter_results_gives_the_image_another_manifest_records_over_an_older_failure(
    tmp_path: Path,
) -> None:
    app = EmulatorApp(default_size=SIZE, faults=FaultPlan([Fault.SERVER_ERROR]))
    async with client_for(app) as client:
        await client.generate_many(PROMPTS[:2], save_dir=tmp_path, shard=(0, 2))  # 0 fails
        await client.generate_many(PROMPTS[:2], save_dir=tmp_path)  # makes 0 and 1
    records = list(iter_results(tmp_path))
    assert [r["index"] for r in records] == [0, 1]
    assert all("file" in r and "error" not in r for r in records)
    (tmp_path / records[0]["file"]).unlink()  # an image gone: its failure is what is left
    gone = next(iter_results(tmp_path))
    assert gone["index"] == 0
    assert gone["error"]["type"] == "ServerError"
    assert gone["resend_could_pay_twice"] is True
