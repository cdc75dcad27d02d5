"""`DiskCache`: seeded requests answered from disk with no request and no cost."""

from __future__ import annotations

from pathlib import Path

import pytest

from flux_sdk import DiskCache, Emulator, FluxClient
from flux_sdk.emulator import EmulatorApp

pytestmark = pytest.mark.anyio


def _client(app: EmulatorApp, cache: DiskCache) -> FluxClient:
    return FluxClient(Emulator(app=app), cache=cache, prices={"emulator": 0.0012})


def _entries(path: Path, pattern: str = "*.img") -> list[Path]:
    return list(path.rglob(pattern))


async def test_a_seeded_request_is_answered_from_disk(tmp_path: Path) -> None:
    app = EmulatorApp()
    cache = DiskCache(tmp_path)
    async with _client(app, cache) as flux:
        first = await flux.generate("a red fox", seed=7)
        seen = app.requests_seen
        second = await flux.generate("a red fox", seed=7)
        assert app.requests_seen == seen  # no request
        assert second.data == first.data
        assert (second.attempts, second.cost, first.cost) == (0, 0.0, 0.0012)
        assert flux.ledger.cache_hits == 1
        assert flux.ledger.cost == 0.0012
        # Another seed, another prompt or other steps: a miss.
        await flux.generate("a red fox", seed=8)
        await flux.generate("a red fox", seed=7, steps=2)
    assert (cache.hits, cache.misses) == (1, 3)
    assert app.requests_seen == seen + 2
    # A new client (a new process) reads the same directory.
    async with _client(app, DiskCache(tmp_path)) as flux:
        again = await flux.generate("a red fox", seed=7)
    assert again.data == first.data
    assert app.requests_seen == seen + 2


async def test_a_request_without_a_seed_is_never_cached(tmp_path: Path) -> None:
    app = EmulatorApp()
    async with _client(app, DiskCache(tmp_path)) as flux:
        await flux.generate("a red fox")
        await flux.generate("a red fox")
    assert app.requests_seen == 2
    assert _entries(tmp_path) == []


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda b: b[: len(b) // 2], id="cut-short"),
        pytest.param(lambda b: b[:-10] + b"0123456789", id="bytes-changed"),
        pytest.param(lambda b: b"not json\n" + b.partition(b"\n")[2], id="header-broken"),
        pytest.param(lambda b: b"", id="empty"),
    ],
)
async def test_a_damaged_entry_is_a_miss(tmp_path: Path, damage: object) -> None:
    app = EmulatorApp()
    async with _client(app, DiskCache(tmp_path)) as flux:
        first = await flux.generate("a red fox", seed=7)
        (entry,) = _entries(tmp_path)
        entry.write_bytes(damage(entry.read_bytes()))  # type: ignore[operator]
        again = await flux.generate("a red fox", seed=7)
        assert again.attempts == 1
        assert again.data == first.data
        assert app.requests_seen == 2
        # The entry was written whole again: the next call is a hit.
        assert (await flux.generate("a red fox", seed=7)).attempts == 0
    assert _entries(tmp_path, "*.tmp") == []


async def test_an_unwritable_cache_only_misses(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    app = EmulatorApp()
    async with _client(app, DiskCache(blocker / "cache")) as flux:
        await flux.generate("a red fox", seed=7)
        image = await flux.generate("a red fox", seed=7)
    assert image.attempts == 1
    assert app.requests_seen == 2
