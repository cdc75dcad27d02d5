"""The flux-sdk command, run as a real subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from flux_sdk.emulator import DEFAULT_API_KEY, render_png


def _run(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DATAOORTS_", "BASETEN_"))}
    return subprocess.run(
        [sys.executable, "-m", "flux_sdk", *args],
        capture_output=True,
        text=True,
        env={**clean, **(env or {})},
        cwd=cwd,
        timeout=60,
        check=False,
    )


def test_generate_with_no_key_uses_the_emulator(tmp_path: Path) -> None:
    """With no key set, `flux-sdk generate` still makes a real image, through the full stack."""
    done = _run("generate", "a tiny astronaut", "--seed", "7", "--out", str(tmp_path / "astro"))
    assert done.returncode == 0, done.stderr
    saved = tmp_path / "astro.png"
    assert done.stdout.strip() == str(saved)
    assert saved.read_bytes() == render_png(
        "a tiny astronaut", seed=7, steps=4, width=1024, height=1024
    )
    assert "emulator" in done.stderr


def test_default_file_name_comes_from_the_prompt(tmp_path: Path) -> None:
    """Without --out the image is saved under a name made from the prompt."""
    done = _run("generate", "A Lighthouse, at Dusk!", "--provider", "emulator", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "a-lighthouse-at-dusk.png").is_file()


def test_generate_against_a_served_emulator(tmp_path: Path, emulator_url: str) -> None:
    """--provider dataoorts with --base-url talks to a real server on loopback."""
    done = _run(
        "generate",
        "a red fox",
        "--provider",
        "dataoorts",
        "--base-url",
        f"{emulator_url}/api/v1",
        "--steps",
        "2",
        "--out",
        str(tmp_path / "fox"),
        env={"DATAOORTS_API_KEY": DEFAULT_API_KEY},
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "fox.png").read_bytes() == render_png(
        "a red fox", seed=None, steps=2, width=1024, height=1024
    )


def test_flux_errors_are_one_line_without_a_traceback(tmp_path: Path, emulator_url: str) -> None:
    """A refused key exits 1 with a single readable line, and never shows the key."""
    done = _run(
        "generate",
        "a red fox",
        "--provider",
        "baseten",
        "--base-url",
        emulator_url,
        env={"BASETEN_API_KEY": "sk-not-the-right-one"},
        cwd=tmp_path,
    )
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1
    assert done.stderr.startswith("flux-sdk: error: baseten answered HTTP 403")
    assert "Traceback" not in done.stderr
    assert "sk-not-the-right-one" not in done.stderr + done.stdout
    assert list(tmp_path.iterdir()) == []


def test_missing_key_names_the_variable() -> None:
    """Choosing a provider with no key says which environment variable to set."""
    done = _run("generate", "a cat", "--provider", "dataoorts")
    assert done.returncode == 1
    assert "DATAOORTS_API_KEY" in done.stderr
    assert "Traceback" not in done.stderr


def test_invalid_input_is_refused_before_sending() -> None:
    """Out-of-range steps exit 1 with the rule that was broken."""
    done = _run("generate", "a cat", "--provider", "emulator", "--steps", "99")
    assert done.returncode == 1
    assert "steps between 1 and 8" in done.stderr


def test_help_and_usage_errors() -> None:
    """--help exits 0 and lists the commands; a bad flag is a usage error (exit 2)."""
    helped = _run("--help")
    assert helped.returncode == 0
    assert "generate" in helped.stdout
    assert "emulator" in helped.stdout
    assert _run("generate", "x", "--provider", "nope").returncode == 2


def test_emulator_refuses_a_public_address() -> None:
    """The emulator server will not listen beyond loopback: its key is public."""
    done = _run("emulator", "--host", "0.0.0.0", "--port", "1")
    assert done.returncode == 1
    assert "loopback" in done.stderr
