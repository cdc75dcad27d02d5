"""Progress that adds up: the last bar or line, the Ctrl-C message and the summary all
show the same counts, and the rate counts only images made in this run."""

from __future__ import annotations

import io
import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from flux_sdk import BatchProgress
from flux_sdk.cli._progress import Progress, render
from flux_sdk.emulator import DEFAULT_API_KEY, EmulatorApp, Fault, FaultPlan

from ._cli import dataoorts
from ._server import serve

APP = EmulatorApp(default_size=32)


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with serve(APP) as base:
        yield base


def test_close_draws_the_counts_the_throttle_held_back() -> None:
    """Updates inside the throttle window are not drawn; close() draws the last one, so
    what is on screen agrees with the summary printed next."""
    stream = io.StringIO()
    progress = Progress(stream, "bar", total=200, clock=lambda: 0.0, every=0.1)
    for done in range(1, 183):
        progress(BatchProgress(total=200, done=done, elapsed=10.0))
    assert stream.getvalue().count("\r") == 1  # only the first update was drawn
    progress.close()
    last = stream.getvalue().split("\r")[-1]
    assert "182/200" in last
    assert last.endswith("\n")


def test_close_adds_a_final_line_in_a_log_only_when_it_is_new() -> None:
    now = [0.0]
    stream = io.StringIO()
    progress = Progress(stream, "lines", total=10, clock=lambda: now[0], every=5.0)
    for done in (1, 2, 3):
        now[0] += 1.0
        progress(BatchProgress(total=10, done=done, elapsed=now[0]))
    progress.close()
    assert [line.split("  ")[0] for line in stream.getvalue().splitlines()] == ["1/10", "3/10"]
    progress.close()  # nothing new: nothing more
    assert len(stream.getvalue().splitlines()) == 2


def test_nothing_is_drawn_in_mode_none() -> None:
    stream = io.StringIO()
    progress = Progress(stream, "none", total=3)
    progress(BatchProgress(total=3, done=3, elapsed=1.0))
    progress.close()
    assert stream.getvalue() == ""
    assert progress.last.done == 3


def test_the_rate_counts_only_images_made_in_this_run() -> None:
    """800 images found from an earlier run and 20 made in 10 s is 2 images a second."""
    line = render(BatchProgress(total=1000, done=20, skipped=800, elapsed=10.0), bar=False)
    assert line.startswith("820/1000  800 skipped  0 failed  2.0 img/s  ETA ")


def test_after_ctrl_c_the_last_line_the_message_and_the_manifest_agree(
    url: str, tmp_path: Path
) -> None:
    """Interrupted half way: the final progress line shows N/40, the message says
    "interrupted at N/40" with the same number of new images as the manifest holds."""
    APP.faults = FaultPlan(rate=1.0, kinds=[Fault.SLOW], slow_interval=0.01, slow_chunk=200)
    source = tmp_path / "prompts.txt"
    source.write_text("".join(f"a kite number {i}\n" for i in range(40)))
    out = tmp_path / "out"
    target = dataoorts(url)
    args = ["batch", str(source), "--out-dir", str(out), *target["args"], "--concurrency", "2"]
    # Python's own Ctrl-C handler, even where the suite runs as a background job.
    start = "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
    start += "from flux_sdk.cli import main; sys.exit(main(sys.argv[1:]))"
    process = subprocess.Popen(
        [sys.executable, "-c", start, *args, "--progress", "lines"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=target["env"],
    )
    try:
        manifest = out / "manifest.jsonl"
        deadline = time.monotonic() + 60
        while process.poll() is None and time.monotonic() < deadline:
            if manifest.exists() and manifest.read_bytes().count(b"\n") >= 6:
                break
            time.sleep(0.005)  # a readiness poll, bounded; nothing is asserted on time
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
        APP.faults = FaultPlan()
        APP.api_key = DEFAULT_API_KEY
    assert process.returncode == 130, stderr
    lines = stderr.splitlines()
    message = re.fullmatch(
        r"flux-sdk: interrupted at (\d+)/40: (\d+) new images saved in .*\. "
        r"Run the same command again to finish the rest\.",
        lines[-1],
    )
    assert message, stderr
    finished, new = int(message.group(1)), int(message.group(2))
    assert lines[-2].startswith(f"{finished}/40  0 failed  ")
    saved = [json.loads(line) for line in manifest.read_text().splitlines()]
    assert new == finished == len(saved) == len(list(out.glob("*.png")))
    assert 6 <= new < 40
