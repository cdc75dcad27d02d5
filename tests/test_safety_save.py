"""GeneratedImage.save writes whole files only, where the caller said; non-images are refused."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import pytest

from flux_sdk import GeneratedImage, GenerateRequest, InvalidResponseError, SaveError

from ._images import image_bytes
from ._safety import PNG

# GeneratedImage.save: whole files only, where the caller said


@pytest.fixture
def image() -> GeneratedImage:
    return GeneratedImage.from_data(
        PNG, provider="test", request=GenerateRequest(prompt="a lighthouse")
    )


def _files(root: Path) -> list[str]:
    return sorted(str(path.relative_to(root)) for path in root.rglob("*") if path.is_file())


def test_save_leaves_exactly_the_file_and_no_temporary(
    tmp_path: Path, image: GeneratedImage
) -> None:
    """save() leaves one complete file under the final name and nothing else."""
    saved = image.save(tmp_path / "out" / "cat")
    assert saved == tmp_path / "out" / "cat.png"
    assert saved.read_bytes() == PNG
    assert _files(tmp_path) == ["out/cat.png"]


def test_save_replaces_an_existing_file_whole(tmp_path: Path, image: GeneratedImage) -> None:
    """Saving over an older image replaces it entirely, never leaving a mix of both."""
    old = tmp_path / "cat.png"
    old.write_bytes(b"\x89PNG old image " * 1000)
    image.save(old)
    assert old.read_bytes() == PNG
    assert _files(tmp_path) == ["cat.png"]


@pytest.mark.parametrize("fail_in", ["write", "fsync", "replace"])
def test_a_save_that_fails_midway_leaves_the_old_file_and_no_temporary(
    tmp_path: Path, image: GeneratedImage, monkeypatch: pytest.MonkeyPatch, fail_in: str
) -> None:
    """A disk error during save() leaves the previous file untouched and no temp file."""
    old = tmp_path / "cat.png"
    old.write_bytes(b"the previous image")

    def disk_full(*args: Any, **kwargs: Any) -> Any:
        raise OSError(28, "No space left on device")

    if fail_in == "write":
        monkeypatch.setattr(os, "fdopen", lambda fd, mode: _FailingFile(fd))
    else:
        monkeypatch.setattr(os, fail_in, disk_full)
    with pytest.raises(OSError, match="No space left"):
        image.save(old)
    monkeypatch.undo()
    assert old.read_bytes() == b"the previous image"
    assert _files(tmp_path) == ["cat.png"]


class _FailingFile:
    """A file object whose write fails half way, as on a full disk."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __enter__(self) -> _FailingFile:
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)

    def write(self, data: bytes) -> int:
        os.write(self.fd, data[: len(data) // 2])
        raise OSError(28, "No space left on device")


@pytest.mark.parametrize(
    "name",
    [
        "../escape",
        "sub/../../up",
        "./plain",
        "CON",
        "NUL",
        "nul.png",
        "COM1.jpg",
        "aux.txt",
        "\u202egnp.exe",
        "a" * 200,
    ],
)
def test_save_writes_exactly_the_path_given_and_nothing_else(
    tmp_path: Path, image: GeneratedImage, name: str
) -> None:
    """save(path) writes one whole file at that path (plus the extension), as documented."""
    where = tmp_path / "dir"
    where.mkdir()
    target = where / name
    expected = target if target.suffix.lower() in (".png", ".jpg") else Path(f"{target}.png")
    saved = image.save(target)
    assert saved == expected
    assert saved.read_bytes() == PNG
    assert _files(tmp_path) == [str(expected.resolve().relative_to(tmp_path.resolve()))]


def test_save_to_an_absolute_path_inside_a_name_goes_to_that_path(
    tmp_path: Path, image: GeneratedImage
) -> None:
    """An absolute path joined to a directory replaces it (pathlib's rule): save() says where."""
    elsewhere = tmp_path / "elsewhere" / "cat"
    saved = image.save(tmp_path / "dir" / str(elsewhere))
    assert saved == elsewhere.with_suffix(".png")
    assert _files(tmp_path) == ["elsewhere/cat.png"]


@pytest.mark.parametrize(
    ("name", "error"),
    [("a\x00b", SaveError), ("a" * 4_000, SaveError), ("sub/" + "b" * 300, SaveError)],
    ids=["nul", "4000-chars", "300-char-component"],
)
def test_save_refuses_impossible_names_and_leaves_nothing_behind(
    tmp_path: Path, image: GeneratedImage, name: str, error: type[Exception]
) -> None:
    """A name no filesystem takes raises SaveError, leaving no file and no temporary behind."""
    with pytest.raises(error):
        image.save(tmp_path / name)
    assert _files(tmp_path) == []


def test_concurrent_saves_to_one_name_leave_one_whole_image(
    tmp_path: Path, image: GeneratedImage
) -> None:
    """Many threads saving the same name end with one complete image and no temp files."""
    other = GeneratedImage.from_data(
        image_bytes("JPEG"), provider="test", request=GenerateRequest(prompt="x")
    )
    threads = [
        threading.Thread(target=(image if i % 2 else other).save, args=(tmp_path / "cat.png",))
        for i in range(16)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert (tmp_path / "cat.png").read_bytes() in (PNG, other.data)
    assert _files(tmp_path) == ["cat.png"]


def test_an_error_image_is_not_accepted_as_an_image() -> None:
    """Bytes that are not an image are refused before anything can save them."""
    with pytest.raises(InvalidResponseError):
        GeneratedImage.from_data(
            b"<html>", provider="test", request=GenerateRequest(prompt="a lighthouse")
        )
