"""W processes fill one batch directory, each its shard; the files and manifests add up."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from flux_sdk import iter_results

WORKER = """
import asyncio, sys
from flux_sdk import Emulator, FluxClient
async def main(k, w, folder):
    prompts = [f"prompt {i}" for i in range(60)]
    async with FluxClient(Emulator()) as flux:
        results = await flux.generate_many(prompts, save_dir=folder, shard=(k, w))
    print(sum(1 for r in results if not isinstance(r, Exception)))
asyncio.run(main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]))
"""


def test_four_processes_fill_one_directory_with_each_index_written_once(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2] / "src")}
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(k), "4", str(tmp_path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        for k in range(4)
    ]
    done = [worker.communicate(timeout=120) for worker in workers]
    assert [w.returncode for w in workers] == [0, 0, 0, 0], [err for _, err in done]
    assert sum(int(out) for out, _ in done) == 60
    names = sorted(p.name for p in tmp_path.glob("*.png"))
    assert names == sorted(f"{i:06d}-prompt-{i}.png" for i in range(60))
    lines = [
        json.loads(line)
        for manifest in tmp_path.glob("manifest-*-of-4.jsonl")
        for line in manifest.read_text().splitlines()
    ]
    assert sorted(line["index"] for line in lines) == list(range(60))  # none twice
    assert [r["index"] for r in iter_results(tmp_path)] == list(range(60))
    assert not list(tmp_path.glob(".*.tmp"))
