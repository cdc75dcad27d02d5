"""`flux-sdk emulator`'s queue options reach the app it serves (the server is not started)."""

from __future__ import annotations

from typing import Any

import pytest

import flux_sdk.emulator
from flux_sdk.cli import main
from flux_sdk.emulator import EmulatorApp, QueueTiming


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[EmulatorApp]:
    apps: list[EmulatorApp] = []

    def run(app: EmulatorApp, **options: Any) -> None:
        apps.append(app)

    monkeypatch.setattr(flux_sdk.emulator, "run", run)
    return apps


def test_the_queue_timing_options_set_fal_and_replicate(served: list[EmulatorApp]) -> None:
    options = "--fal-in-queue 3 --fal-in-progress 0 --replicate-starting 2"
    more = "--replicate-processing 4 --replicate-run-seconds 7.5"
    assert main(["emulator", *options.split(), *more.split()]) == 0
    (app,) = served
    assert app.queue == QueueTiming(in_queue=3, in_progress=0)
    replicate = app.replicate
    assert (replicate.starting, replicate.processing, replicate.run_seconds) == (2, 4, 7.5)


def test_the_defaults_answer_a_prefer_wait_create_at_once(served: list[EmulatorApp]) -> None:
    """What the official clients' run() needs: the output in the create's answer."""
    assert main(["emulator"]) == 0
    (app,) = served
    assert (app.replicate.starting, app.replicate.processing) == (1, 1)
    assert app.replicate.run_seconds == 0.0
    assert app.queue == QueueTiming()


@pytest.mark.parametrize(
    ("option", "value"),
    [("--fal-in-queue", "-1"), ("--replicate-processing", "x"), ("--replicate-run-seconds", "-2")],
)
def test_a_bad_queue_option_is_a_usage_error(
    served: list[EmulatorApp], option: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["emulator", option, value]) == 2
    assert f"argument {option}:" in capsys.readouterr().err
    assert served == []
