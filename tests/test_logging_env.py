"""``FLUX_SDK_LOG``: log lines on stderr for a script, set up when flux_sdk is imported."""

from __future__ import annotations

import logging
import subprocess
import sys
import uuid

import pytest

from flux_sdk import FluxWarning
from flux_sdk._base._logging import configure_from_env

from ._cli import environment

_SCRIPT = """
import anyio
from flux_sdk import Emulator, FluxClient

async def main():
    async with FluxClient(Emulator()) as client:
        await client.generate("a cat", seed=1)

anyio.run(main)
"""


@pytest.fixture
def logger() -> logging.Logger:
    """A fresh logger standing in for ``flux_sdk``, so the suite's own is untouched."""
    return logging.getLogger(f"flux_sdk_test_{uuid.uuid4().hex}")


@pytest.mark.parametrize(
    ("value", "level"),
    [("debug", logging.DEBUG), ("INFO", logging.INFO), (" Warning ", logging.WARNING)],
)
def test_a_level_adds_one_stderr_handler(logger: logging.Logger, value: str, level: int) -> None:
    handler = configure_from_env(value, logger)
    assert isinstance(handler, logging.StreamHandler)
    assert handler.stream is sys.stderr
    assert logger.handlers == [handler]
    assert logger.level == level


def test_a_logger_with_handlers_keeps_them(logger: logging.Logger) -> None:
    """An application that set up logging itself keeps its own handler (and only it)."""
    own = logging.NullHandler()
    logger.addHandler(own)
    assert configure_from_env("debug", logger) is None
    assert logger.handlers == [own]
    assert logger.level == logging.DEBUG


@pytest.mark.parametrize("value", ["", "  "])
def test_empty_changes_nothing(logger: logging.Logger, value: str) -> None:
    assert configure_from_env(value, logger) is None
    assert logger.handlers == []
    assert logger.level == logging.NOTSET


def test_an_unknown_value_is_ignored_with_a_warning(logger: logging.Logger) -> None:
    with pytest.warns(FluxWarning, match="FLUX_SDK_LOG='verbose' is not a log level") as caught:
        assert configure_from_env("verbose", logger) is None
    assert "use debug, info, warning" in str(caught[0].message)
    assert logger.handlers == []
    assert logger.level == logging.NOTSET


def _script(value: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _SCRIPT],
        capture_output=True,
        text=True,
        env=environment(FLUX_SDK_LOG=value),
        timeout=60,
    )


def test_debug_shows_each_attempt_on_stderr_without_the_key() -> None:
    done = _script("debug")
    assert done.returncode == 0, done.stderr
    assert "DEBUG flux_sdk] emulator attempt 1 (generate): HTTP 200" in done.stderr
    assert "INFO flux_sdk.emulator] POST /api/v1 200" in done.stderr
    assert "emulator-key" not in done.stderr


def test_warning_hides_the_attempt_lines() -> None:
    done = _script("warning")
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""


def test_a_bad_value_warns_once_and_the_script_runs() -> None:
    done = _script("loud")
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("FluxWarning: FLUX_SDK_LOG='loud' is not a log level") == 1
