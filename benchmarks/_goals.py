"""The goals table of docs/benchmarks.md: each of issues 6 and 17's goals, its figure
from bench.py's results, and whether it was met."""

from __future__ import annotations

from _figures import (
    CONCURRENCY,
    FLOOR_CONCURRENCY,
    FLOOR_GOAL,
    LABELS,
    RSS_CONCURRENCY,
    Results,
    ratio,
)


def verdict(ok: bool | None) -> str:
    return "not measured" if ok is None else ("**pass**" if ok else "**miss**")


def goals(
    results: Results, imports: dict[str, float], body_bytes: dict[str, int]
) -> list[list[str]]:
    """Rows of (goal, measured, verdict)."""
    rows: list[list[str]] = []

    def median(key: str, client: str, c: int, name: str) -> float | None:
        cell = results.get((key, client, c))
        return cell.median(name) if cell else None

    for ours, where in (("flux_sdk", "on asyncio"), ("flux_trio", "on trio")):
        ratios = {
            c: ratio(
                median("2mib", ours, c, "cpu_per_image"),
                median("2mib", "floor", c, "cpu_per_image"),
            )
            for c in FLOOR_CONCURRENCY
        }
        known = [r for r in ratios.values() if r is not None]
        rows.append(
            [
                f"CPU per 2 MiB image, flux_sdk's default stack {where}, at most "
                f"{FLOOR_GOAL} x the floor (issue 17)",
                ", ".join(f"c={c}: {r:.2f}x" for c, r in ratios.items() if r is not None)
                or "failed",
                verdict(max(known) <= FLOOR_GOAL if len(known) == len(ratios) else None),
            ]
        )
    for ours, peer, limit in (
        ("flux_sdk", "httpx", 0.35),
        ("flux_sdk", "openai", 0.5),
        ("flux_aiohttp", "httpx", 0.35),
        ("flux_aiohttp", "openai", 0.5),
    ):
        ratios = {
            c: ratio(
                median("2mib", ours, c, "cpu_per_image"),
                median("2mib", peer, c, "cpu_per_image"),
            )
            for c in CONCURRENCY
        }
        known = [r for r in ratios.values() if r is not None]
        shown = ", ".join(f"c={c}: {r:.2f}x" for c, r in ratios.items() if r is not None)
        which = "" if ours == "flux_sdk" else " (with the optional AiohttpTransport)"
        rows.append(
            [
                f"CPU per 2 MiB image, end to end, at most {limit} x {LABELS[peer]}{which}",
                shown or "failed",
                verdict(max(known) <= limit if len(known) == len(ratios) else None),
            ]
        )
    ratios = {
        c: ratio(
            median("small", "flux_sdk", c, "cpu_per_image"),
            median("small", "httpx", c, "cpu_per_image"),
        )
        for c in CONCURRENCY
    }
    known = [r for r in ratios.values() if r is not None]
    rows.append(
        [
            "CPU per small request at most 1.1 x raw httpx",
            ", ".join(f"c={c}: {r:.2f}x" for c, r in ratios.items() if r is not None) or "failed",
            verdict(max(known) <= 1.1 if len(known) == len(ratios) else None),
        ]
    )
    for key, label in (("small", "small"), ("2mib", "2 MiB")):
        r = ratio(
            median(key, "flux_sdk", 256, "images_per_s"),
            median(key, "flux_sdk", 16, "images_per_s"),
        )
        peers = ", ".join(
            f"{LABELS[client]} {q:.2f}x"
            for client in ("httpx", "aiohttp", "openai")
            if (
                q := ratio(
                    median(key, client, 256, "images_per_s"),
                    median(key, client, 16, "images_per_s"),
                )
            )
            is not None
        )
        rows.append(
            [
                f"Throughput ({label}) at concurrency 256 at least 0.8 x at 16",
                ("failed" if r is None else f"{r:.2f}x") + f" (for comparison: {peers})",
                verdict(None if r is None else r >= 0.8),
            ]
        )
    rss = median("rss", "flux_sdk", RSS_CONCURRENCY, "maxrss")
    body = body_bytes.get("2mib", 0)
    bound = 50e6 + RSS_CONCURRENCY * 2.5 * body
    rows.append(
        [
            f"Peak RSS at concurrency {RSS_CONCURRENCY} with 2 MiB images at most "
            f"50 MB + {RSS_CONCURRENCY} x 2.5 x body ({body / 1e6:.2f} MB) = {bound / 1e6:.0f} MB",
            "failed" if rss is None else f"{rss / 1e6:.0f} MB ({rss / bound:.2f}x the bound)",
            verdict(None if rss is None else rss <= bound),
        ]
    )
    flux, deps = imports.get("flux_sdk"), imports.get("flux_sdk's dependencies")
    used = imports.get("its dependencies as it uses them")
    r = ratio(flux, deps)
    measured = "failed"
    if r is not None and flux is not None and deps is not None:
        measured = f"{flux * 1e3:.0f} ms vs {deps * 1e3:.0f} ms: {r:.2f}x"
        if used is not None:
            measured += (
                f" (against the dependencies as flux_sdk uses them, {used * 1e3:.0f} ms: "
                f"{flux / used:.2f}x)"
            )
    rows.append(
        [
            "flux_sdk's first-generate imports (`from flux_sdk import FluxClient, Dataoorts, "
            "GenerateRequest`) at most 1.3 x importing its runtime dependencies",
            measured,
            verdict(None if r is None else r <= 1.3),
        ]
    )
    return rows
