"""Every option is checked as it is parsed: a bad value exits 2 with one line naming the
option, and nothing is sent."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from flux_sdk.cli import main
from flux_sdk.emulator import DEFAULT_API_KEY, EmulatorApp

from ._server import serve

APP = EmulatorApp(default_size=32)

BAD = [
    *[("generate", "--timeout", value) for value in ("nan", "0", "-1", "inf", "-inf", "soon")],
    ("generate", "--seed", "-1"),
    ("generate", "--steps", "0"),
    ("generate", "--steps", "2.5"),
    ("generate", "--width", "0"),
    ("generate", "--height", "-8"),
    ("batch", "--concurrency", "0"),
    ("batch", "--max-retries", "-1"),
    ("batch", "--seed", "-1"),
    ("batch", "--steps", "0"),
    ("batch", "--timeout", "nan"),
    ("batch", "--timeout", "0"),
    ("batch", "--progress", "fancy"),
    ("emulator", "--port", "70000"),
    ("emulator", "--port", "-1"),
    ("emulator", "--port", "0"),
    ("emulator", "--default-size", "0"),
    ("emulator", "--image-bytes", "0"),
    ("emulator", "--fault-rate", "1.5"),
    ("emulator", "--fault-rate", "nan"),
    ("emulator", "--fault-kinds", "429,teapot"),
    ("emulator", "--fault-script", "ok,,503"),
    ("emulator", "--retry-after", "-1"),
    ("emulator", "--stall-seconds", "inf"),
    ("emulator", "--slow-interval", "nan"),
    ("emulator", "--slow-chunk", "0"),
]


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with serve(APP) as base:
        yield base


def argv(command: str, option: str, value: str, url: str, tmp_path: Path) -> list[str]:
    """A command that would run (and send) but for the one bad value."""
    target = ["--provider", "dataoorts", "--base-url", f"{url}/api/v1"]
    if command == "generate":
        return ["generate", "a cat", *target, "--out", str(tmp_path / "cat"), option, value]
    if command == "batch":
        prompts = tmp_path / "prompts.txt"
        prompts.write_text("a cat\na dog\n")
        out = str(tmp_path / "out")
        return ["batch", str(prompts), "--out-dir", out, *target, option, value]
    return ["emulator", option, value]


@pytest.mark.parametrize(("command", "option", "value"), BAD)
def test_a_bad_value_exits_2_with_one_line_naming_the_option(
    command: str,
    option: str,
    value: str,
    url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DATAOORTS_API_KEY", DEFAULT_API_KEY)
    seen = APP.requests_seen
    assert main(argv(command, option, value, url, tmp_path)) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    assert captured.err.startswith(f"flux-sdk {command}: error: argument {option}: ")
    assert "Traceback" not in captured.err
    assert APP.requests_seen == seen
    assert list(tmp_path.iterdir()) in ([], [tmp_path / "prompts.txt"])


def test_messages_say_what_is_allowed(capsys: pytest.CaptureFixture[str]) -> None:
    cases = {
        ("generate", "x", "--timeout", "nan"): "must be a positive number of seconds (got 'nan')",
        ("batch", "-", "--out-dir", "o", "--concurrency", "0"): "must be at least 1 (got 0)",
        ("emulator", "--port", "70000"): "must be from 1 to 65535 (got 70000)",
        ("emulator", "--fault-kinds", "teapot"): "unknown fault 'teapot'; choose from 429",
    }
    for args, message in cases.items():
        assert main(list(args)) == 2
        assert message in capsys.readouterr().err


def test_good_edge_values_are_accepted(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Seed 0, one step and zero retries are real choices, not mistakes."""
    monkeypatch.setenv("DATAOORTS_API_KEY", DEFAULT_API_KEY)
    args = argv("batch", "--seed", "0", url, tmp_path)
    assert main([*args, "--steps", "1", "--max-retries", "0", "--progress", "none"]) == 0
    assert len(list((tmp_path / "out").glob("*.png"))) == 2
