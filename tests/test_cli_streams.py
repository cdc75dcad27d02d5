"""Output that cannot be written (a closed pipe, a full device) ends a command cleanly:
never a traceback, and a batch whose progress cannot be shown still makes every image."""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from flux_sdk import Emulator, SavedImage
from flux_sdk.cli._progress import Progress
from flux_sdk.cli._providers import Chosen, open_client
from flux_sdk.emulator import DEFAULT_API_KEY, EmulatorApp, FaultPlan, render_png

from ._cli import FLUX_SDK, dataoorts, environment
from ._server import serve

SIZE = 32
APP = EmulatorApp(default_size=SIZE)
PROMPTS = [f"a paper boat number {i}" for i in range(12)]


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with serve(APP) as base:
        yield base


@pytest.fixture(autouse=True)
def _fresh_app() -> Iterator[None]:
    APP.faults = FaultPlan()
    APP.api_key = DEFAULT_API_KEY
    yield
    APP.api_key = DEFAULT_API_KEY


@contextlib.contextmanager
def broken(kind: str) -> Iterator[int | IO[Any]]:
    """A place to write that fails: /dev/full (ENOSPC), or a pipe whose reader is gone
    (EPIPE) before the child starts, so the failure does not depend on timing."""
    if kind == "full":
        with open("/dev/full", "w") as full:
            yield full
        return
    reader, writer = os.pipe()
    os.close(reader)
    try:
        yield writer
    finally:
        os.close(writer)


def run(args: list[str], env: dict[str, str], **streams: Any) -> subprocess.CompletedProcess[str]:
    options: dict[str, Any] = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, **streams}
    return subprocess.run(args, text=True, env=env, timeout=120, check=False, **options)


@pytest.mark.parametrize(("kind", "reason"), [("full", "No space left"), ("closed", "Broken pipe")])
def test_generate_to_a_broken_stdout_says_so_in_one_line(
    tmp_path: Path, kind: str, reason: str
) -> None:
    """The image is saved; the path cannot be printed: exit 1, one line saying both."""
    with broken(kind) as stdout:
        args = ["generate", "a paper boat", "--provider", "emulator", "--seed", "3"]
        done = run(
            [*FLUX_SDK, *args, "--out", str(tmp_path / "boat")], environment(), stdout=stdout
        )
    assert done.returncode == 1
    saved = tmp_path / "boat.png"
    assert done.stderr.splitlines()[-1].startswith(
        f"flux-sdk: error: saved {str(saved)!r}, but could not print its path: {reason}"
    )
    assert "Traceback" not in done.stderr
    assert "Exception ignored" not in done.stderr
    assert saved.read_bytes() == render_png(
        "a paper boat", seed=3, steps=4, width=1024, height=1024
    )


@pytest.mark.parametrize("kind", ["full", "closed"])
def test_help_into_a_broken_stdout_exits_quietly(kind: str) -> None:
    with broken(kind) as stdout:
        done = run([*FLUX_SDK, "--help"], environment(), stdout=stdout)
    assert done.returncode == 0
    assert done.stderr == ""


@pytest.mark.parametrize("mode", ["bar", "lines"])
@pytest.mark.parametrize("kind", ["full", "closed"])
def test_a_batch_whose_progress_cannot_be_shown_still_makes_every_image(
    url: str, tmp_path: Path, kind: str, mode: str
) -> None:
    """Progress and summary go to a standard error that fails: the batch carries on and
    exits 0, where a traceback would exit 1 and a failed flush at exit 120."""
    source = tmp_path / "prompts.txt"
    source.write_text("\n".join(PROMPTS) + "\n")
    out = tmp_path / "out"
    target = dataoorts(url)
    args = [*FLUX_SDK, "batch", str(source), "--out-dir", str(out), *target["args"]]
    with broken(kind) as stderr:
        done = run([*args, "--seed", "1", "--progress", mode], target["env"], stderr=stderr)
    assert done.returncode == 0
    images = sorted(p for p in out.iterdir() if p.suffix == ".png")
    assert len(images) == len(PROMPTS)
    for i, path in enumerate(images):
        assert path.read_bytes() == render_png(
            PROMPTS[i], seed=1 + i, steps=4, width=SIZE, height=SIZE
        )


def test_a_failing_batch_still_exits_1_when_nothing_can_be_shown(url: str, tmp_path: Path) -> None:
    APP.api_key = "another-key"
    source = tmp_path / "prompts.txt"
    source.write_text("\n".join(PROMPTS) + "\n")
    target = dataoorts(url)
    args = [*FLUX_SDK, "batch", str(source), "--out-dir", str(tmp_path / "out"), *target["args"]]
    with broken("closed") as stderr:
        done = run(args, target["env"], stderr=stderr)
    assert done.returncode == 1


class _ClosedStream(io.StringIO):
    """A stream whose reader has gone: every write fails as a closed pipe does."""

    def __init__(self) -> None:
        super().__init__()
        self.attempts = 0

    def write(self, text: str) -> int:
        self.attempts += 1
        raise BrokenPipeError(32, "Broken pipe")


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["bar", "lines"])
async def test_progress_that_cannot_be_drawn_stops_drawing_not_the_batch(
    tmp_path: Path, mode: str
) -> None:
    """Inside the batch (which stops on any exception from on_progress) the progress
    display swallows the failure, tries once, and draws no more."""
    stream = _ClosedStream()
    progress = Progress(stream, mode, total=len(PROMPTS), every=0.0)
    options = argparse.Namespace(timeout=None)
    async with contextlib.AsyncExitStack() as stack:
        client = await open_client(options, Chosen(Emulator()), stack)
        results = await client.generate_many(
            PROMPTS, save_dir=tmp_path, keep_images=False, on_progress=progress
        )
    assert all(isinstance(r, SavedImage) for r in results)
    assert progress.broken
    assert stream.attempts == 1
    assert progress.last.done == len(PROMPTS)
    progress.close()
    assert stream.attempts == 1
