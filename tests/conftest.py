"""Shared fixtures: every async test runs once on asyncio and once on trio."""

from __future__ import annotations

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
