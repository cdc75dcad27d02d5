"""The plot of CPU per 2 MiB image on docs/benchmarks.md (matplotlib, optional)."""

from __future__ import annotations

from pathlib import Path

from _figures import CLIENTS, CONCURRENCY, FLOOR_GOAL, LABELS, Results


def plot(results: Results, path: Path) -> bool:
    """Grouped bars of CPU per 2 MiB image, one group per concurrency; False without
    matplotlib (the page then lacks a fresh plot, nothing else)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ModuleNotFoundError:
        return False
    figure, axes = plt.subplots(figsize=(9, 4.5), dpi=110)
    width = 0.8 / len(CLIENTS)
    for k, client in enumerate(CLIENTS):
        values = []
        for c in CONCURRENCY:
            cell = results.get(("2mib", client, c))
            value = cell.median("cpu_per_image") if cell else None
            values.append(0.0 if value is None else value * 1e3)
        xs = [i + (k - (len(CLIENTS) - 1) / 2) * width for i in range(len(CONCURRENCY))]
        axes.bar(
            xs,
            values,
            width,
            label=LABELS[client],
            color="black" if client == "floor" else None,
            zorder=2,
        )
    for i, c in enumerate(CONCURRENCY):
        floor = results.get(("2mib", "floor", c))
        value = floor.median("cpu_per_image") if floor else None
        if value is not None:
            axes.hlines(
                value * 1e3 * FLOOR_GOAL, i - 0.42, i + 0.42, colors="black", linestyles="dashed"
            )
    axes.set_xticks(range(len(CONCURRENCY)), [f"{c} in flight" for c in CONCURRENCY])
    axes.set_ylabel("client CPU per 2 MiB image (ms)")
    axes.set_title(f"CPU per image; dashed: {FLOOR_GOAL} x the floor (the goal for flux_sdk)")
    axes.grid(axis="y", alpha=0.3, zorder=0)
    axes.legend(fontsize=8, ncols=2)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return True
