"""Shared fixtures: every async test runs once on asyncio and once on trio."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

_OUR_ENV = (
    "DATAOORTS_API_KEY",
    "DATAOORTS_BASE_URL",
    "BASETEN_API_KEY",
    "BASETEN_MODEL_ID",
    "BASETEN_BASE_URL",
)


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's real keys must never leak into (or change) a test."""
    for name in _OUR_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def emulator_url() -> Iterator[str]:
    """The emulator (Dataoorts answering JSON) on a real loopback port, for the session."""
    from flux_sdk.emulator import EmulatorApp

    from ._server import serve

    with serve(EmulatorApp()) as url:
        yield url


@pytest.fixture(scope="session")
def raw_emulator_url() -> Iterator[str]:
    """The emulator with Dataoorts answering raw image bytes."""
    from flux_sdk.emulator import EmulatorApp

    from ._server import serve

    with serve(EmulatorApp(dataoorts_response="raw")) as url:
        yield url
