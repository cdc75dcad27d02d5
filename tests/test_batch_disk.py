"""When the disk says no: one SaveError that says what to do, and a batch a re-run can
finish; and `GeneratedImage.save` errors as SaveError."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

from flux_sdk import GeneratedImage, GenerateRequest, SaveError
from flux_sdk.emulator import EmulatorApp, render_png

from ._batch import SIZE, client_for, expected, images_in

PNG = render_png("cat", seed=1, steps=4, width=8, height=8)


def image() -> GeneratedImage:
    return GeneratedImage.from_data(PNG, provider="test", request=GenerateRequest(prompt="cat"))


def files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def consistent(folder: Path, count: int) -> None:
    """Every item has its image once, and the manifest's last line for it names that file
    with its hash; no image file lacks a line, no partial line was left."""
    content = (folder / "manifest.jsonl").read_bytes()
    assert content.endswith(b"\n")
    lines = [json.loads(line) for line in content.splitlines() if line]
    last = {line["index"]: line for line in lines}
    assert sorted(last) == list(range(count))
    names = images_in(folder)
    assert names == sorted(line["file"] for line in last.values())
    for line in last.values():
        data = (folder / line["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == line["sha256"]


def one_line(error: BaseException) -> str:
    text = str(error)
    assert "\n" not in text
    return text


# --- a batch's manifest cannot be written ---------------------------------------------


def failing_manifest_sync(folder: Path, after: int) -> Callable[[int], None]:
    """os.fsync that fails with ENOSPC for the manifest once it has synced ``after`` times."""
    real = os.fsync
    synced = 0

    def fsync(fd: int) -> None:
        nonlocal synced
        manifest = folder / "manifest.jsonl"
        if manifest.exists() and os.fstat(fd).st_ino == manifest.stat().st_ino:
            if synced >= after:
                raise OSError(errno.ENOSPC, "No space left on device")
            synced += 1
        real(fd)

    return fsync


@pytest.mark.anyio
async def test_a_full_disk_under_the_manifest_is_one_save_error_and_resumable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One SaveError naming what to do, not a raw OSError (nor a second one on close);
    the lines written stay valid, and a re-run leaves files and manifest in agreement."""
    prompts = [f"p{i}" for i in range(12)]
    app = EmulatorApp(default_size=SIZE)
    monkeypatch.setattr(os, "fsync", failing_manifest_sync(tmp_path, after=3))
    async with client_for(app, limit=3) as client:
        with pytest.raises(SaveError) as caught:
            await client.generate_many(prompts, save_dir=tmp_path)
    assert type(caught.value) is SaveError
    assert caught.value.errno == errno.ENOSPC
    message = one_line(caught.value)
    assert "manifest.jsonl" in message
    assert "free some disk space" in message
    assert "run it again" in message
    assert app.requests_seen <= 3 + 3 + 1
    content = (tmp_path / "manifest.jsonl").read_bytes()
    assert [json.loads(line)["index"] for line in content.splitlines()] != []
    assert content.endswith(b"\n")  # the line that failed was taken back whole

    monkeypatch.undo()
    async with client_for(app, limit=3) as client:
        results = await client.generate_many(prompts, save_dir=tmp_path)
    assert [r.data for r in results if isinstance(r, GeneratedImage)] == [
        expected(p) for p in prompts
    ]
    consistent(tmp_path, len(prompts))


_FSIZE_SCRIPT = """
import json, resource, sys
import anyio, httpx
from flux_sdk import Dataoorts, FluxClient
from flux_sdk.emulator import DEFAULT_API_KEY, EmulatorApp

async def main():
    app = EmulatorApp(default_size=%(size)d)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as http:
        provider = Dataoorts(api_key=DEFAULT_API_KEY, base_url="http://127.0.0.1/api/v1")
        async with FluxClient(provider, http_client=http, max_concurrency=2) as client:
            resource.setrlimit(resource.RLIMIT_FSIZE, (%(limit)d, %(limit)d))
            try:
                await client.generate_many(%(prompts)r, save_dir=sys.argv[1])
            except Exception as exc:
                return {"type": type(exc).__name__, "errno": getattr(exc, "errno", None),
                        "message": str(exc)}
    return {"type": None}

print(json.dumps(anyio.run(main)))
"""


@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_FSIZE is POSIX")
@pytest.mark.anyio
async def test_a_file_size_limit_mid_line_is_one_save_error_and_resumable(
    tmp_path: Path,
) -> None:
    """A real RLIMIT_FSIZE cuts a manifest line part way: the batch raises one SaveError
    (EFBIG) that names the limit, leaves no partial line, and a re-run completes it."""
    prompts = [f"prompt number {i}" for i in range(20)]
    script = _FSIZE_SCRIPT % {"size": SIZE, "limit": 2500, "prompts": prompts}
    with anyio.fail_after(60):
        done = await anyio.run_process(
            [sys.executable, "-c", textwrap.dedent(script), str(tmp_path)], check=False
        )
    assert done.returncode == 0, done.stderr.decode()
    outcome = json.loads(done.stdout)
    assert outcome["type"] == "SaveError"
    assert outcome["errno"] == errno.EFBIG
    assert "manifest.jsonl" in outcome["message"]
    assert "ulimit -f" in outcome["message"]
    assert "\n" not in outcome["message"]
    content = (tmp_path / "manifest.jsonl").read_bytes()
    assert 0 < len(content) <= 2500
    assert content.endswith(b"\n")
    assert all(json.loads(line) for line in content.splitlines())

    app = EmulatorApp(default_size=SIZE)
    async with client_for(app) as client:
        results = await client.generate_many(prompts, save_dir=tmp_path, keep_images=False)
    assert not any(isinstance(r, BaseException) for r in results)
    assert app.requests_seen < len(prompts)  # what the first run recorded was kept
    consistent(tmp_path, len(prompts))


@pytest.mark.anyio
async def test_an_image_that_cannot_be_saved_is_one_save_error_with_advice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The error names the item, the reason and what to do."""
    real = os.replace

    def quota(src: object, dst: object) -> None:
        if str(dst).endswith(".png"):
            raise OSError(errno.EFBIG, "File too large")
        real(src, dst)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "replace", quota)
    async with client_for(EmulatorApp(default_size=SIZE), limit=1) as client:
        with pytest.raises(SaveError) as caught:
            await client.generate_many(["aa", "bb"], save_dir=tmp_path)
    message = one_line(caught.value)
    assert message.startswith("could not save image 0: could not save the image to ")
    assert "File too large" in message
    assert "ulimit -f" in message
    assert "run it again" in message
    assert images_in(tmp_path) == []


# --- GeneratedImage.save --------------------------------------------------------------


def test_saving_under_a_plain_file_is_a_save_error(tmp_path: Path) -> None:
    """A parent that is a file, however deep, is named in the error; nothing is left."""
    (tmp_path / "plainfile").write_text("not a directory")
    for target in ("plainfile/x", "plainfile/sub/deeper/x"):
        with pytest.raises(SaveError, match="plainfile' is not a directory") as caught:
            image().save(tmp_path / target)
        one_line(caught.value)
    assert files(tmp_path) == ["plainfile"]


def test_a_nul_in_the_name_is_a_save_error(tmp_path: Path) -> None:
    with pytest.raises(SaveError, match="NUL character") as caught:
        image().save(tmp_path / "new" / "a\x00b")
    assert not isinstance(caught.value, ValueError)
    assert files(tmp_path) == []


def test_a_name_too_long_is_a_save_error_and_new_directories_are_removed(
    tmp_path: Path,
) -> None:
    """Directories the failed save created are gone again; existing ones stay."""
    (tmp_path / "kept").mkdir()
    with pytest.raises(SaveError, match="use a shorter file name") as caught:
        image().save(tmp_path / "kept" / "new" / "deeper" / ("b" * 300))
    assert caught.value.errno == errno.ENAMETOOLONG
    one_line(caught.value)
    assert files(tmp_path) == ["kept"]


def test_a_name_near_the_limit_still_saves(tmp_path: Path) -> None:
    """The temporary name is kept short, so any name the file system takes works."""
    name = "c" * 251  # + ".png": 255 bytes, the usual limit
    saved = image().save(tmp_path / name)
    assert saved.name == name + ".png"
    assert files(tmp_path) == [name + ".png"]


def test_saving_onto_a_directory_or_to_no_name_is_a_save_error(tmp_path: Path) -> None:
    (tmp_path / "taken.png").mkdir()
    with pytest.raises(SaveError, match="a directory already has that name"):
        image().save(tmp_path / "taken.png")
    with pytest.raises(SaveError, match="give a file name"):
        image().save("")
    assert files(tmp_path) == ["taken.png"]


def test_a_full_disk_during_save_is_a_save_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(SaveError, match="No space left on device; free some disk space"):
        image().save(tmp_path / "out" / "cat")
    monkeypatch.undo()
    assert files(tmp_path) == []


@pytest.mark.anyio
async def test_asave_raises_the_same_save_error(tmp_path: Path) -> None:
    (tmp_path / "plainfile").write_text("x")
    with pytest.raises(SaveError, match="is not a directory"):
        await image().asave(tmp_path / "plainfile" / "cat")
