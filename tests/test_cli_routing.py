"""The command line over several providers: --provider a,b,c and --routing."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from flux_sdk.cli import main
from flux_sdk.emulator import DEFAULT_API_KEY, EmulatorApp, Fault, FaultPlan, render_png

from ._cli import FLUX_SDK, environment
from ._server import serve

DOWN = EmulatorApp(faults=FaultPlan([Fault.UNAVAILABLE] * 10_000))
UP = EmulatorApp()


@pytest.fixture(scope="module")
def down() -> Iterator[str]:
    with serve(DOWN) as base:
        yield base


@pytest.fixture(scope="module")
def up() -> Iterator[str]:
    with serve(UP) as base:
        yield base


def test_a_failing_first_host_fails_over_to_the_second(down: str, up: str, tmp_path: Path) -> None:
    """--provider dataoorts,baseten: Dataoorts is down, Baseten answers; one image."""
    env = environment(
        DATAOORTS_API_KEY=DEFAULT_API_KEY,
        DATAOORTS_BASE_URL=f"{down}/api/v1",
        BASETEN_API_KEY=DEFAULT_API_KEY,
        BASETEN_BASE_URL=up,
    )
    out = tmp_path / "fox"
    command = [*FLUX_SDK, "generate", "a red fox", "--seed", "3", "--out", str(out)]
    done = subprocess.run(
        [*command, "--provider", "dataoorts,baseten"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "fox.png").read_bytes() == render_png(
        "a red fox", seed=3, steps=4, width=1024, height=1024
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("dataoorts,nohost", "invalid choice: 'nohost'"),
        ("auto,dataoorts", "'auto' cannot be one of several providers"),
        ("dataoorts,dataoorts", "names a provider twice"),
    ],
)
def test_bad_provider_lists_exit_2_with_one_line(
    value: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A list the command cannot use is refused before anything is made or sent."""
    assert main(["generate", "a cat", "--provider", value]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert message in err[0]


def test_one_providers_settings_are_refused_with_several(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """--base-url names one host; with several the command says to use variables."""
    monkeypatch.setenv("DATAOORTS_API_KEY", DEFAULT_API_KEY)
    code = main(
        ["generate", "a cat", "--provider", "dataoorts,emulator", "--base-url", "https://x.example"]
    )
    assert code == 1
    assert "set each one's environment variables" in capsys.readouterr().err
