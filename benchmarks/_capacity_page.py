"""capacity.py's figures: its clients and capacities, the traces, the plots and its section."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from _page import machine

CAPACITIES = (48, 96, 192)
ROUNDS = 25  # the clients that can fill the host get at least this many rounds of it
# The clients that find or are told the capacity; the others keep a limit of 16.
SCALED = ("flux_default", "flux_known")
CLIENTS = ("flux_default", "flux_known", "flux_fixed16", "gather16", "openai16")
LABELS = {
    "flux_default": "flux_sdk defaults (adaptive)",
    "flux_known": "flux_sdk max_concurrency=replicas (knows the capacity)",
    "flux_fixed16": "flux_sdk max_concurrency=16",
    "gather16": "hand-written gather + Semaphore(16)",
    "openai16": "openai-python, Semaphore(16)",
}
SPREAD = 0.25
RETRY_AFTER = 0.5
GOAL = 1.15  # issue 26: the defaults within this of the least possible, under 2% 429s
MAX_RATE = 250.0  # requests a second the least possible time may need (capacity.py)
FULL = 0.95  # the share of the replicas in service that counts as the host filled
MARK_START = "<!-- capacity: start -->"
MARK_END = "<!-- capacity: end -->"


def queue_for(replicas: int) -> int:
    return max(4, replicas // 4)


def trace(result: dict[str, Any]) -> dict[str, float | None]:
    """Where a run's time went, from the host's in-service timeline: ``before`` (from
    the run's start to the first request at the host: the client's start), ``ramp``
    (from there until `FULL` of the replicas were first busy), ``tail`` (from when they
    were last that busy to the last answer), ``after`` (from there to the run's end:
    the last answers read, the client closed), ``busy`` (the replicas' mean use from
    the first request to the last answer, and ``busy_mid`` between ramp and tail), and
    the CPU each side used as a share of one core over the run."""
    timeline, replicas, wall = result["timeline"], result["replicas"], result["wall"]
    out: dict[str, float | None] = {
        "client_cpu": result["client_cpu"] / wall,
        "server_cpu": result["server_cpu"] / wall if result["server_cpu"] is not None else None,
        "before": None,
        "after": None,
        "ramp": None,
        "tail": None,
        "busy": None,
        "busy_mid": None,
    }
    if len(timeline) < 2:
        return out
    t0, end = timeline[0][0], timeline[-1][0]
    out["before"], out["after"] = t0 - result["start"], result["end"] - end
    full = [t for t, serving, _ in timeline if serving >= FULL * replicas]
    if full:
        out["ramp"], out["tail"] = full[0] - t0, end - full[-1]
    area = area_mid = 0.0
    for (t, serving, _), (t_next, _, _) in itertools.pairwise(timeline):
        area += serving * (t_next - t)
        if full and full[0] <= t < full[-1]:
            area_mid += serving * (min(t_next, full[-1]) - t)
    out["busy"] = area / (replicas * (end - t0)) if end > t0 else None
    if full and full[-1] > full[0]:
        out["busy_mid"] = area_mid / (replicas * (full[-1] - full[0]))
    return out


def trace_line(result: dict[str, Any]) -> str:
    t = trace(result)

    def show(key: str, form: str) -> str:
        value = t[key]
        return "-" if value is None else format(value, form)

    return (
        f"start {show('before', '.2f')} s, ramp {show('ramp', '.2f')} s, "
        f"tail {show('tail', '.2f')} s, end {show('after', '.2f')} s, replicas busy "
        f"{show('busy', '.0%')} ({show('busy_mid', '.0%')} between), CPU: client "
        f"{show('client_cpu', '.0%')}, server {show('server_cpu', '.0%')} of a core"
    )


def plot(results: list[dict[str, Any]], img: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    img.mkdir(parents=True, exist_ok=True)
    shown = sorted({r["replicas"] for r in results})
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for client in CLIENTS:
        rows = sorted((r for r in results if r["client"] == client), key=lambda r: r["replicas"])
        if not rows:
            continue
        xs, ys = [r["replicas"] for r in rows], [r["ratio"] for r in rows]
        (line,) = ax.plot(xs, ys, marker="o", label=LABELS[client])
        lost = [r for r in rows if r["failed"]]  # fast only because it gave items up
        ax.scatter(
            [r["replicas"] for r in lost],
            [r["ratio"] for r in lost],
            marker="X",
            s=110,
            color=line.get_color(),
            zorder=3,
        )
    ax.scatter([], [], marker="X", s=110, color="black", label="items failed (see the table)")
    ax.axhline(1.0, color="grey", linewidth=0.8)
    ax.axhline(GOAL, color="grey", linewidth=0.8, linestyle="--", label=f"goal: {GOAL}x")
    ax.set_xscale("log")
    ax.set_xticks(shown, [str(c) for c in shown])
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%gx"))
    ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_yticks([1, GOAL, 1.5, 2, 3, 5, 8, 13])
    ax.set_xlabel("hidden capacity (replicas)")
    ax.set_ylabel("completion time / least possible")
    ax.set_title("A batch at the provider's limit")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(img / "capacity-completion.png", dpi=110)
    plt.close(fig)
    names = ["capacity-completion.png"]

    runs = [r for r in results if r["client"] == "flux_default" and len(r["timeline"]) > 1]
    if runs:
        fig, axes = plt.subplots(len(runs), 1, figsize=(7, 2.6 * len(runs)), squeeze=False)
        for ax, run in zip(axes[:, 0], runs, strict=True):
            timeline_axes(ax, run)
        axes[-1, 0].set_xlabel("seconds")
        axes[0, 0].legend(fontsize=7, loc="lower right")
        fig.tight_layout()
        fig.savefig(img / "capacity-timeline.png", dpi=110)
        plt.close(fig)
        names.append("capacity-timeline.png")
    return names


def timeline_axes(ax: Any, run: dict[str, Any]) -> None:
    """One adaptive run: the host's replicas in service and queue, the client's limit,
    and a tick per 429."""
    replicas, timeline = run["replicas"], run["timeline"]
    t0 = timeline[0][0]
    times = [s[0] - t0 for s in timeline]
    ax.step(times, [s[1] for s in timeline], where="post", label="in service")
    held = [s[1] + s[2] for s in timeline]
    ax.step(times, held, where="post", label="in service + queued", linewidth=0.8)
    if run.get("limits"):
        ax.step(
            [sample[0] - t0 for sample in run["limits"]],
            [sample[1] for sample in run["limits"]],
            where="post",
            label="the client's adaptive limit",
            linewidth=0.8,
        )
    if run.get("refusals"):
        ax.plot(
            [t - t0 for t in run["refusals"]],
            [replicas + queue_for(replicas)] * len(run["refusals"]),
            "|",
            color="red",
            markersize=10,
            label="a 429",
        )
    ax.axhline(replicas, color="grey", linewidth=0.8, linestyle="--", label="replicas")
    ax.axhline(
        replicas + queue_for(replicas), color="red", linewidth=0.8, linestyle=":", label="429 above"
    )
    ax.set_ylabel("requests")
    ax.set_title(
        f"flux_sdk defaults, {replicas} replicas, median {run['median'] * 1000:.0f} ms",
        fontsize=9,
    )


def section(results: list[dict[str, Any]], command: str, note: str) -> str:
    medians = {r["replicas"]: r["median"] for r in results}
    shown = [c for c in CAPACITIES if c in medians]
    lines = [
        MARK_START,
        "## At the provider's limit (issues 17 and 26)",
        "",
        "A batch against a host of hidden capacity: the emulator with a `Capacity` of",
        ", ".join(map(str, shown)) + " replicas, lognormal service times (sigma "
        f"{SPREAD}), a FIFO queue of a quarter of the",
        f"replicas (at least 4) and a 429 with `Retry-After: {RETRY_AFTER}` beyond it. The",
        "service time's median is 100 ms, scaled down from FLUX's ~1 s so a run takes",
        f"minutes, but never shorter than replicas / {MAX_RATE:.0f} s, so that the least",
        f"possible time never needs more than {MAX_RATE:.0f} requests a second through one",
        "Python client and one Python server on this 2-core machine (96 replicas at 100 ms",
        "would need 960 a second: that would measure the machine, not the limit). At 192",
        "replicas that makes the median 768 ms, close to FLUX's real ~1 s. Completion time",
        "is against the least possible, prompts x median / replicas; 429s are those the",
        "client received. Prompts: 1,200, or for the two clients that can fill the host,",
        f"{ROUNDS} rounds of it where that is more (2,400 at 96, 4,800 at 192: with 6 rounds",
        "the last round's slowest answers would be most of what is measured).",
        f"From one run: `{command}` (`nox -s capacity`). {note}",
        "",
        *machine(),
        "",
        "| client | "
        + " | ".join(f"{c} replicas, {medians[c] * 1000:.0f} ms" for c in shown)
        + " |",
        "|---|" + "---:|" * len(shown),
    ]
    for client in CLIENTS:
        cells = []
        for c in shown:
            r = next((r for r in results if r["client"] == client and r["replicas"] == c), None)
            if r is None:
                cells.append("not run")
                continue
            cell = f"{r['wall']:.1f} s ({r['ratio']:.2f}x), {r['refused']} 429s"
            if r["count"] != 1200:
                cell += f" ({r['count']:,} prompts)"
            if r["failed"]:
                cell += f", **{r['failed']} failed**"
            cells.append(cell)
        lines.append(f"| {LABELS[client]} | " + " | ".join(cells) + " |")
    mine = {r["replicas"]: r for r in results if r["client"] == "flux_default"}
    known = {r["replicas"]: r for r in results if r["client"] == "flux_known"}
    against = ", ".join(
        f"{mine[c]['wall'] / known[c]['wall']:.2f}x at {c}"
        for c in shown
        if c in mine and c in known
    )
    lines += [
        "",
        f"Goal: flux_sdk's defaults within {GOAL}x of the least possible at every capacity,",
        f"with 429s under 2% of requests and nothing lost: {verdict(mine.values())}.",
        "",
        "Where the time went, from the host's timeline (ramp: until 95% of the replicas",
        "were first busy; tail: after they were last; CPU as a share of one core):",
        "",
        "| run | ramp | tail | replicas busy (between) | client CPU | server CPU |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        if r["client"] not in SCALED:
            continue
        t = trace(r)
        cells = [
            "-" if t["ramp"] is None else f"{t['ramp']:.2f} s",
            "-" if t["tail"] is None else f"{t['tail']:.2f} s",
            f"{t['busy'] or 0:.0%} ({t['busy_mid'] or 0:.0%})",
            f"{t['client_cpu'] or 0:.0%}",
            "-" if t["server_cpu"] is None else f"{t['server_cpu']:.0%}",
        ]
        lines.append(f"| {LABELS[r['client']]}, {r['replicas']} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "The client told the capacity is the floor for any client on this machine, and the",
        "fair figure to hold the defaults against: what keeps it above the least possible",
        "is paid by every client here. The service times' mean is 3% above the median the",
        "least possible is figured from; the last round's slowest answers end the batch",
        "(the tail); and between an answer and the next request a replica idles while one",
        "Python client and one Python server, sharing 2 cores with other jobs, do their",
        "part (its replicas' use between ramp and tail). The defaults, which must find the",
        f"capacity, took {against} its time: that is the figure to read here, since both",
        "ran one after the other on the same busy machine, and what the machine costs both",
        "moves the absolute figures by several percent from run to run. What the defaults add is",
        "the ramp (the table above): slow start from 16 adds a slot an answer (the limit",
        "doubles a round trip) and, once its answers have kept up for half a round trip,",
        "two (it triples), until the first 429; its last round trip overshoots the host's",
        "queue, so a few requests are refused and wait out their `Retry-After` of 0.5 s.",
        "At 192 replicas the ramp is still about three round trips of 768 ms, near the",
        "least a slow start from 16 can take without harming a smaller host: the round trip",
        "before the first answers, with 16 replicas busy, is 2.4% of the least time at 192,",
        "and from the second the limit already triples a round trip. Each way to shorten",
        "it, weighed in virtual time (`benchmarks/capacity_sim.py`, which runs this batch",
        "against a simulated host in seconds), costs a host the defaults must also serve: a",
        "start of 24 gained 2% at 192 replicas and lost items at 4 (more refusals than",
        "retries); two slots an answer from the first answer gained 1% and lost items at 12",
        "replicas 20 ms away, and let a host that queues instead of refusing hold 4.2x its",
        "16 replicas (3.8x now, `--queue-host`); four slots an answer gained 1% for three",
        "times the 429s at 48 and 4.9x at that queueing host. Slow start also pauses",
        "while answers come back slow and ends at what the host is serving (`AdaptiveLimit`):",
        "a client short of CPU (the client CPU column) holds requests it has not sent yet,",
        "and they used to reach the host all at once, as a burst of 429s, when the CPU came",
        "back. A long tail or a low use between ramp and tail is the machine's load",
        "(see the load average above): both processes are held back and the host's",
        "replicas idle with the client's limit far above them (the timeline plot).",
        "",
        "![Completion time against capacity](img/capacity-completion.png)",
        "",
        "![Requests at the host over each adaptive batch](img/capacity-timeline.png)",
        MARK_END,
    ]
    return "\n".join(lines) + "\n"


def verdict(runs: Any) -> str:
    runs = list(runs)
    ok = bool(runs) and all(
        r["ratio"] <= GOAL and r["refused"] < 0.02 * r["count"] and not r["failed"] for r in runs
    )
    return "**pass**" if ok else "**miss**"
