"""`flux-sdk batch` in a real subprocess against the emulator on a loopback socket."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from flux_sdk import BatchProgress, GenerateRequest
from flux_sdk.cli._progress import Progress, render
from flux_sdk.cli._prompts import read_prompts
from flux_sdk.emulator import DEFAULT_API_KEY, EmulatorApp, Fault, FaultPlan, render_png

from ._server import serve

SIZE = 32
APP = EmulatorApp(default_size=SIZE)
PROMPTS = [f"a lighthouse number {i}" for i in range(40)]


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with serve(APP) as base:
        yield base


@pytest.fixture(autouse=True)
def _fresh_app() -> Iterator[None]:
    APP.faults = FaultPlan()
    APP.api_key = DEFAULT_API_KEY
    yield
    APP.faults = FaultPlan()
    APP.api_key = DEFAULT_API_KEY


@pytest.fixture
def prompts_file(tmp_path: Path) -> Path:
    path = tmp_path / "prompts.txt"
    path.write_text("\n".join(PROMPTS) + "\n")
    return path


def command(url: str, prompts: Path | str, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "flux_sdk",
        "batch",
        str(prompts),
        "--out-dir",
        str(out),
        "--provider",
        "dataoorts",
        "--base-url",
        f"{url}/api/v1",
        "--seed",
        "1",
        *extra,
    ]


def environment() -> dict[str, str]:
    return {**os.environ, "DATAOORTS_API_KEY": DEFAULT_API_KEY, "PYTHONUNBUFFERED": "1"}


def run(args: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, input=stdin, capture_output=True, text=True, env=environment(), timeout=120
    )


def expected(i: int) -> bytes:
    return render_png(PROMPTS[i], seed=1 + i, steps=4, width=SIZE, height=SIZE)


def assert_complete(out: Path) -> None:
    """Every prompt's image exactly once, byte for byte, and nothing else but the manifest."""
    names = sorted(os.listdir(out))
    assert names[-1] == "manifest.jsonl"
    images = names[:-1]
    assert len(images) == len(PROMPTS)
    for i, name in enumerate(images):
        assert re.fullmatch(rf"{i:06d}-a-lighthouse-number-{i}\.png", name)
        assert (out / name).read_bytes() == expected(i)


def wait_for_lines(path: Path, count: int, process: subprocess.Popen[str]) -> None:
    """Block until the manifest has ``count`` lines: a readiness poll, bounded."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        if path.exists() and path.read_bytes().count(b"\n") >= count:
            return
        time.sleep(0.005)
    raise AssertionError(f"the batch never wrote {count} manifest lines")


def test_a_batch_writes_every_image_and_a_rerun_skips_them(
    url: str, prompts_file: Path, tmp_path: Path
) -> None:
    """Exit 0, one file per prompt, and a second run sends nothing."""
    out = tmp_path / "out"
    first = run(command(url, prompts_file, out, "--concurrency", "8"))
    assert first.returncode == 0, first.stderr
    assert_complete(out)
    assert "40 done, 0 skipped (already there), 0 failed" in first.stderr
    seen = APP.requests_seen
    second = run(command(url, prompts_file, out))
    assert second.returncode == 0, second.stderr
    assert "0 done, 40 skipped" in second.stderr
    assert APP.requests_seen == seen
    assert_complete(out)


def test_prompts_from_standard_input_as_jsonl(url: str, tmp_path: Path) -> None:
    """'-' reads the prompts from stdin; JSONL items keep their own seeds."""
    lines = [json.dumps({"prompt": "a quiet harbour", "seed": 77}), json.dumps({"prompt": "dunes"})]
    out = tmp_path / "out"
    done = run(command(url, "-", out), stdin="\n".join(lines) + "\n")
    assert done.returncode == 0, done.stderr
    assert (out / "000000-a-quiet-harbour.png").read_bytes() == render_png(
        "a quiet harbour", seed=77, steps=4, width=SIZE, height=SIZE
    )
    assert (out / "000001-dunes.png").read_bytes() == render_png(
        "dunes", seed=2, steps=4, width=SIZE, height=SIZE
    )


def test_bad_lines_are_reported_and_nothing_is_sent(url: str, tmp_path: Path) -> None:
    """A file with bad items exits 2 naming each line, before any request."""
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "fine"}\n{"prompt": "x", "sed": 3}\nnot json\n["a list"]\n')
    seen = APP.requests_seen
    done = run(command(url, bad, tmp_path / "out"))
    assert done.returncode == 2
    assert "line 2: invalid request: sed" in done.stderr
    assert "line 3: not valid JSON" in done.stderr
    assert "line 4: expected an object" in done.stderr
    assert APP.requests_seen == seen
    assert not (tmp_path / "out").exists()


def test_failed_items_give_exit_code_1_and_are_listed(
    url: str, prompts_file: Path, tmp_path: Path
) -> None:
    """A wrong key fails every item once (401 is never retried), and says so."""
    APP.api_key = "another-key"
    seen = APP.requests_seen
    out = tmp_path / "out"
    done = run(command(url, prompts_file, out))
    assert done.returncode == 1
    assert "0 done, 0 skipped (already there), 40 failed" in done.stderr
    assert "AuthenticationError" in done.stderr
    assert "... and 30 more" in done.stderr
    assert APP.requests_seen - seen == 40
    assert DEFAULT_API_KEY not in done.stderr + done.stdout
    lines = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert {line["error"]["type"] for line in lines} == {"AuthenticationError"}


def _slow_app() -> None:
    """Every answer trickles in (about 70 ms each), so at 2 at a time a 40-image batch
    takes over a second and is surely still running when the test stops it."""
    APP.faults = FaultPlan(rate=1.0, kinds=[Fault.SLOW], slow_interval=0.01, slow_chunk=200)


@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGINT])
def test_a_batch_stopped_half_way_is_finished_by_a_rerun(
    url: str, prompts_file: Path, tmp_path: Path, stop: signal.Signals
) -> None:
    """Killed (SIGKILL) or interrupted (Ctrl-C) half way, a rerun ends with each image
    exactly once and no temp file or partial image left."""
    _slow_app()
    out = tmp_path / "out"
    # As typed at a terminal: SIGINT may be ignored where the suite runs (a background
    # job), so the child puts Python's own Ctrl-C handler back before it starts.
    args = command(url, prompts_file, out, "--concurrency", "2")
    start = "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
    start += "from flux_sdk.cli import main; sys.exit(main(sys.argv[1:]))"
    process = subprocess.Popen(
        [sys.executable, "-c", start, *args[3:]],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment(),
    )
    try:
        wait_for_lines(out / "manifest.jsonl", 8, process)
        process.send_signal(stop)
        _, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    if stop == signal.SIGINT:
        assert process.returncode == 130, stderr
        assert "Run the same command again" in stderr
    else:
        assert process.returncode == -signal.SIGKILL
    finished = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert 8 <= len(finished) < len(PROMPTS)
    # A kill can land while an image is half written: leave one such temp file.
    (out / ".000039-a-lighthouse-number-39.png.0badf00d.tmp").write_bytes(b"\x89PNG half")

    APP.faults = FaultPlan()
    seen = APP.requests_seen
    rerun = run(command(url, prompts_file, out))
    assert rerun.returncode == 0, rerun.stderr
    assert f"{len(PROMPTS) - len(finished)} done, {len(finished)} skipped" in rerun.stderr
    assert APP.requests_seen - seen == len(PROMPTS) - len(finished)
    assert_complete(out)


def test_the_first_line_decides_between_text_and_jsonl() -> None:
    """Blank lines are skipped, and item i gets seed N+i unless it has its own."""
    found = read_prompts("\n a cat \n\nb dog\n", seed=10, steps=2)
    assert found.problems == []
    assert found.requests == [
        GenerateRequest(prompt="a cat", seed=10, steps=2),
        GenerateRequest(prompt="b dog", seed=11, steps=2),
    ]
    text = '{"prompt": "x1", "seed": 3}\n{"prompt": "x2", "steps": 1}\n'
    found = read_prompts(text, seed=100, steps=4)
    assert found.problems == []
    assert [(r.seed, r.steps) for r in found.requests] == [(3, 4), (101, 1)]


def test_progress_lines_are_throttled_but_the_last_always_shows() -> None:
    """In a log, a line every few seconds and the final one; never one per image."""
    now = [0.0]
    stream = io.StringIO()
    progress = Progress(stream, "lines", clock=lambda: now[0], every=5.0)
    for done in range(1, 11):
        now[0] += 1.0
        progress(BatchProgress(total=10, done=done, elapsed=now[0]))
    lines = stream.getvalue().splitlines()
    assert lines == [
        "1/10  0 failed  1.0 img/s  ETA 9s",
        "6/10  0 failed  1.0 img/s  ETA 4s",
        "10/10  0 failed  1.0 img/s  ETA 0s",
    ]


def test_the_bar_is_redrawn_in_place_and_ended_by_close() -> None:
    """On a terminal one line is rewritten, then ended so the summary starts afresh."""
    stream = io.StringIO()
    progress = Progress(stream, "bar", clock=lambda: 0.0)
    progress(BatchProgress(total=4, done=1, failed=1, elapsed=2.0))
    progress(BatchProgress(total=4, done=2, skipped=2, failed=0, elapsed=2.0))
    progress.close()
    text = stream.getvalue()
    assert text.count("\r") == 2
    assert text.endswith("\n")
    assert render(BatchProgress(total=4, done=1, failed=1, elapsed=2.0), width=8) == (
        "[####----]  2/4  1 failed  0.5 img/s  ETA 2s"
    )
