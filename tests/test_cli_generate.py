"""Where `flux-sdk generate` saves: into a directory, never over a file unless --force,
and any problem with the path as one line, decided before anything is sent."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from flux_sdk.cli import main
from flux_sdk.emulator import DEFAULT_API_KEY, EmulatorApp, render_png

from ._server import serve

SIZE = 32
APP = EmulatorApp(default_size=SIZE)
PROMPT = "a tiny astronaut"
Run = Callable[..., tuple[int, str, str]]


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with serve(APP) as base:
        yield base


@pytest.fixture
def generate(url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Run:
    """Run `flux-sdk generate PROMPT ...` in process against the served emulator; return
    the exit code, standard output and standard error."""
    monkeypatch.setenv("DATAOORTS_API_KEY", DEFAULT_API_KEY)

    def run(*args: str) -> tuple[int, str, str]:
        target = ["--provider", "dataoorts", "--base-url", f"{url}/api/v1"]
        code = main(["generate", PROMPT, *target, *args])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


def image(seed: int) -> bytes:
    return render_png(PROMPT, seed=seed, steps=4, width=SIZE, height=SIZE)


def test_an_existing_directory_gets_a_file_named_from_the_prompt(
    generate: Run, tmp_path: Path
) -> None:
    code, out, err = generate("--seed", "1", "--out", str(tmp_path))
    assert code == 0, err
    saved = tmp_path / "a-tiny-astronaut.png"
    assert out == f"{saved}\n"
    assert saved.read_bytes() == image(1)


def test_a_path_ending_in_a_separator_is_a_directory_to_create(
    generate: Run, tmp_path: Path
) -> None:
    code, _, err = generate("--seed", "1", "--out", f"{tmp_path}/new/dir/")
    assert code == 0, err
    assert (tmp_path / "new" / "dir" / "a-tiny-astronaut.png").read_bytes() == image(1)


@pytest.mark.parametrize("out", ["astro", "astro.png"])
def test_an_existing_file_is_kept_unless_force_and_nothing_is_sent(
    generate: Run, tmp_path: Path, out: str
) -> None:
    """With or without the extension in --out, the existing astro.png is refused before
    the request (which would be paid for) is sent."""
    assert generate("--seed", "1", "--out", str(tmp_path / out))[0] == 0
    saved = tmp_path / "astro.png"
    seen = APP.requests_seen
    code, stdout, err = generate("--seed", "2", "--out", str(tmp_path / out))
    assert code == 1
    assert stdout == ""
    assert err == (
        f"flux-sdk: error: {str(saved)!r} already exists; pass --force to overwrite it, "
        "or choose another --out\n"
    )
    assert APP.requests_seen == seen
    assert saved.read_bytes() == image(1)
    code, stdout, err = generate("--seed", "2", "--out", str(tmp_path / out), "--force")
    assert code == 0, err
    assert saved.read_bytes() == image(2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["astro.png"]  # no temp file left


def test_the_default_name_is_not_overwritten_either(
    generate: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert generate("--seed", "1")[0] == 0
    code, _, err = generate("--seed", "2")
    assert code == 1
    assert "'a-tiny-astronaut.png' already exists; pass --force" in err
    assert (tmp_path / "a-tiny-astronaut.png").read_bytes() == image(1)


def test_a_parent_that_is_a_file_is_named_in_one_line(generate: Run, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a directory")
    seen = APP.requests_seen
    code, _, err = generate("--out", str(tmp_path / "notes.txt" / "sub" / "astro"))
    assert code == 1
    assert err.count("\n") == 1
    assert f"{str(tmp_path / 'notes.txt')!r} is a file, not a directory" in err
    assert "File exists" not in err
    assert APP.requests_seen == seen


def test_a_name_the_file_system_refuses_is_one_line(generate: Run, tmp_path: Path) -> None:
    code, _, err = generate("--out", str(tmp_path / ("x" * 300)))
    assert code == 1
    assert err.count("\n") == 1
    assert err.startswith("flux-sdk: error: cannot save to ")
    assert err.endswith(": File name too long\n")


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")
def test_a_write_that_fails_after_the_image_arrived_is_one_line(
    generate: Run, tmp_path: Path
) -> None:
    """/proc takes no new files, even from root: the save itself fails."""
    code, out, err = generate("--out", "/proc/astro.png", "--force")
    assert code == 1
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith("flux-sdk: error: could not save the image to '/proc/astro.png': ")
