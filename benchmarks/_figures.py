"""What bench.py measures: the clients, the workloads, and one cell of figures.

Shared by bench.py (which measures), _page.py and _plot.py (which show the figures) and
profile_client.py.
"""

from __future__ import annotations

import importlib.metadata
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
API_KEY = "emulator-key"
CLIENTS = ("floor", "httpx", "aiohttp", "openai", "flux_sdk", "flux_aiohttp", "flux_trio")
LABELS = {
    "floor": "floor (hand-written)",
    "floor_issue": "floor (issue 26)",
    "flux_trio": "flux_sdk on trio",
    "httpx": "raw httpx",
    "aiohttp": "raw aiohttp",
    "openai": "openai-python",
    "flux_sdk": "flux_sdk",
    "flux_aiohttp": "flux_sdk + AiohttpTransport",
}
CONCURRENCY = (1, 16, 64, 256)
# Issue 17's goal: flux_sdk's CPU per 2 MiB image at most this many times the floor's.
FLOOR_GOAL = 1.5
FLOOR_CONCURRENCY = (1, 16, 64)
PLOT = ROOT / "docs" / "img" / "cpu-per-image.png"
RSS_CONCURRENCY = 32
MIB = 1024 * 1024
# The emulator's side for images nobody asked a size for; padding makes up the bytes.
IMAGE_SIDE = 32


@dataclass(frozen=True)
class Workload:
    key: str
    title: str
    image_bytes: int
    write: bool
    counts: dict[int, int]  # images measured per concurrency
    quick_counts: dict[int, int]
    warmup_cap: int  # unmeasured requests before the measured ones, at most
    repeats: int  # per figure in a full run; cheap small requests get more

    def warmup(self, concurrency: int, quick: bool) -> int:
        """Enough to open the pool and fill lazy caches; at most ``warmup_cap`` requests.

        Small answers warm up with a whole wave, so every connection is open before the
        batch starts. With 2 MiB answers a wave at 256 would cost more time than it is
        worth: the connections past the cap open as the batch starts, before the part
        that is measured (see ``_worker.window``).
        """
        cap = min(self.warmup_cap, 8) if quick else self.warmup_cap
        return min(max(concurrency, 2), cap)


WORKLOADS = (
    Workload(
        "small",
        "Small answers: a 1.5 KB image, about 2 KB of JSON",
        image_bytes=1536,
        write=False,
        # 1,000 at one in flight: 200 (half a second) varied by a third between repeats.
        counts={1: 1000, 16: 600, 64: 600, 256: 768},
        quick_counts={1: 10, 16: 32, 64: 64, 256: 256},
        warmup_cap=256,
        repeats=4,
    ),
    Workload(
        "2mib",
        "Realistic answers: a 2 MiB image, about 2.8 MB of JSON, written to disk",
        image_bytes=2 * MIB,
        write=True,
        counts={1: 16, 16: 128, 64: 192, 256: 512},
        quick_counts={1: 2, 16: 16, 64: 16, 256: 16},
        warmup_cap=8,
        repeats=2,
    ),
)


@dataclass
class Cell:
    """Every repeat of one client on one workload at one concurrency."""

    cpu_per_image: list[float] = field(default_factory=list)  # seconds
    images_per_s: list[float] = field(default_factory=list)
    maxrss: list[float] = field(default_factory=list)  # bytes
    server_cpu_per_image: list[float] = field(default_factory=list)
    system_share: list[float] = field(default_factory=list)  # kernel part of the CPU
    faults_per_image: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def median(self, name: str) -> float | None:
        values: list[float] = getattr(self, name)
        return statistics.median(values) if values else None


Results = dict[tuple[str, str, int], Cell]  # (workload, client, concurrency)


def ratio(a: float | None, b: float | None) -> float | None:
    """``a / b``, or None when either is missing (or ``b`` is 0)."""
    return None if a is None or b is None or b == 0 else a / b


def import_cases() -> dict[str, str]:
    return {
        "raw httpx": "import httpx",
        "raw aiohttp": "import aiohttp",
        "openai-python": "from openai import AsyncOpenAI",
        # Names load on first use: what a program needs for its first image is the figure.
        "flux_sdk": "from flux_sdk import FluxClient, Dataoorts, GenerateRequest",
        "import flux_sdk alone": "import flux_sdk",
        "flux_sdk's dependencies": "import " + ", ".join(runtime_dependencies()),
        # On asyncio, anyio's first call loads its backend, and with it asyncio.
        "its dependencies as it uses them": "import "
        + ", ".join(runtime_dependencies())
        + "; import asyncio, anyio._backends._asyncio",
    }


def runtime_dependencies() -> list[str]:
    """flux_sdk's required dependencies as module names (each is named like its package)."""
    names = []
    for requirement in importlib.metadata.requires("flux-sdk") or []:
        if "extra ==" in requirement:
            continue
        match = re.match(r"[A-Za-z0-9_.-]+", requirement)
        if match:
            names.append(match[0].lower().replace("-", "_"))
    return names
