"""Shared by the batch tests: an in-process emulator client, its images, and the manifest."""

from __future__ import annotations

import json
import os
import re
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from flux_sdk import AttemptMiddleware, AttemptNext, Call, Dataoorts, FluxClient, Retry
from flux_sdk.emulator import DEFAULT_API_KEY, EmulatorApp, render_png

pytestmark = pytest.mark.anyio

SIZE = 32
NAME = re.compile(r"\d{6}-[a-z0-9-]*\.png")


def expected(prompt: str, seed: int | None = None) -> bytes:
    """The emulator's image for a Dataoorts request: the same bytes every time."""
    return render_png(prompt, seed=seed, steps=4, width=SIZE, height=SIZE)


async def no_sleep(seconds: float) -> None:
    await anyio.lowlevel.checkpoint()


class InFlight:
    """Middleware that records the most attempts it ever saw at once."""

    def __init__(self) -> None:
        self.now = 0
        self.most = 0

    async def __call__(self, call: Call, call_next: AttemptNext) -> httpx.Response:
        self.now += 1
        self.most = max(self.most, self.now)
        try:
            await anyio.lowlevel.checkpoint()  # let the others pile up if the limit allows
            return await call_next(call)
        finally:
            self.now -= 1


@asynccontextmanager
async def client_for(
    app: EmulatorApp,
    *,
    limit: int = 4,
    retries: int = 0,
    attempt_middleware: Sequence[AttemptMiddleware] = (),
    **options: Any,
) -> AsyncIterator[FluxClient]:
    """A client that talks to ``app`` in process, retrying without waiting."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as http:
        provider = Dataoorts(api_key=DEFAULT_API_KEY, base_url="http://127.0.0.1/api/v1")
        async with FluxClient(
            provider,
            http_client=http,
            max_concurrency=limit,
            max_retries=Retry(retries, sleep=no_sleep),
            attempt_middleware=attempt_middleware,
            **options,
        ) as client:
            yield client


def manifest(folder: Path) -> list[dict[str, Any]]:
    lines = (folder / "manifest.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line]


def images_in(folder: Path) -> list[str]:
    return sorted(name for name in os.listdir(folder) if name != "manifest.jsonl")
