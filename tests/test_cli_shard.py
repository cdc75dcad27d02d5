"""`flux-sdk batch --shard K/W`: W workers fill one directory, each with its own items
and manifest, and a re-run without --shard reads them all as one batch."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from flux_sdk import iter_results
from flux_sdk.cli import main
from flux_sdk.emulator import DEFAULT_API_KEY, EmulatorApp, Fault, FaultPlan

from ._server import serve

APP = EmulatorApp(default_size=32)
PROMPTS = [f"a lighthouse number {i}" for i in range(7)]


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with serve(APP) as base:
        yield base


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("DATAOORTS_API_KEY", DEFAULT_API_KEY)
    APP.faults = FaultPlan()
    yield
    APP.faults = FaultPlan()


def batch(url: str, tmp_path: Path, *extra: str) -> list[str]:
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS) + "\n")
    target = ["--provider", "dataoorts", "--base-url", f"{url}/api/v1", "--progress", "none"]
    return ["batch", str(prompts), "--out-dir", str(tmp_path / "out"), *target, *extra]


def test_three_shards_fill_one_directory_and_a_rerun_finds_every_item(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    for k in range(3):
        assert main([*batch(url, tmp_path, "--seed", "1", "--shard", f"{k}/3")]) == 0
        summary = capsys.readouterr().err
        mine = len(range(k, len(PROMPTS), 3))
        assert f"{mine} done, 0 skipped" in summary
        assert f"manifest: {out / f'manifest-{k}-of-3.jsonl'}" in summary
        lines = (out / f"manifest-{k}-of-3.jsonl").read_text().splitlines()
        indices = sorted(json.loads(line)["index"] for line in lines)  # in order of ending
        assert indices == list(range(k, len(PROMPTS), 3))
    assert [r["index"] for r in iter_results(out)] == list(range(len(PROMPTS)))
    assert len(list(out.glob("*.png"))) == len(PROMPTS)
    seen = APP.requests_seen
    assert main([*batch(url, tmp_path, "--seed", "1")]) == 0
    assert f"0 done, {len(PROMPTS)} skipped" in capsys.readouterr().err
    assert APP.requests_seen == seen


def test_a_shards_failures_are_named_by_their_line_in_the_file(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    APP.faults = FaultPlan(rate=1.0, kinds=[Fault.SERVER_ERROR])
    assert main([*batch(url, tmp_path, "--max-retries", "0", "--shard", "1/3")]) == 1
    err = capsys.readouterr().err
    assert "0 done, 0 skipped (already there), 2 failed" in err
    failed = [line.split(":")[0].strip() for line in err.splitlines() if line.startswith("  line")]
    assert failed == ["line 2", "line 5"]  # items 1 and 4, the shard's own


@pytest.mark.parametrize("value", ["3/3", "4/3", "-1/3", "0/0", "1", "a/b", "1/2/3", "1.0/2"])
def test_a_bad_shard_is_a_usage_error_before_anything_is_read_or_sent(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str
) -> None:
    seen = APP.requests_seen
    assert main(batch(url, tmp_path, f"--shard={value}")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("flux-sdk batch: error: argument --shard: expected K/W")
    assert "0 <= K < W" in err
    assert APP.requests_seen == seen
    assert not (tmp_path / "out").exists()
