"""flux_sdk against issue 26's floor at concurrency 8, in interleaved rounds (bench.py --floor8).

Both clients (and raw httpx and openai-python, for reference) run in warm processes of
their own, side by side against one emulator serving 2 MiB images (about 2.8 MB of
JSON, each image written to a file). Each process does its warm-up batch first; then
the parent asks them for one round at a time, taking turns (the floor and flux_sdk back
to back, who goes first swapping every round), so the machine's drift falls on all
alike and they never run at once. A
round's figure is its process CPU time per image, read the same way in all
(``_worker.rounds``): the ratio of one round is a client's over the floor's in the same
turn. Reported: the median ratio over rounds and its spread (interquartile range over
the median), with each client's own spread and page faults per image.
"""

from __future__ import annotations

import datetime
import json
import os
import statistics
from pathlib import Path
from typing import Any

from _blocks import CONCURRENCY, Sizes, one_block, start
from _figures import LABELS, WORKLOADS

HERE = Path(__file__).resolve().parent
CLIENTS = ("floor_issue", "flux_sdk")  # the pair the goal compares
ALL = (*CLIENTS, "httpx", "openai")  # and two references, in the same rounds
GOAL, SPREAD_GOAL = 1.3, 0.15
# From `python benchmarks/profile_client.py flux_sdk 2mib 8 --count 640 --cpu` and
# this comparison with page faults per image, 2026-12 (see the module docstring of
# flux_sdk/_transport/_http11.py and _http11_io.py).
WHERE = [
    "Where flux_sdk's CPU goes (cProfile at concurrency 8): flux_sdk's own HTTP/1.1",
    "connections write a request in one `send` and receive a body of known length",
    "with `recv_into` straight into one buffer, a few receives per image; the",
    "largest parts are those receives (the kernel's copy, as for the floor), one copy",
    "of the body out of the buffer (~0.2 ms), `pybase64` and httpx's request and",
    "response objects. What made rounds wander was page faults: a fresh 2.8 MB",
    "buffer per answer costs about 700 faults as it is first written, and the",
    "allocator hands back touched memory or not depending on what else was freed.",
    "With a fresh `bytearray` per answer flux_sdk took 6.1 ms and 1,340 faults per",
    "image; with receive buffers kept between answers, about 3 ms and none. The",
    "floor's own figure still wanders with its page faults (StreamReader grows its",
    "buffer as the body arrives; the correlation over rounds is above), and with the",
    "machine's load, which moves both clients but not in step. GC is not a cause:",
    "gen 0 collections cost under 1 ms per round of 64 images, and no gen 2 ran.",
    "",
    "With one back-to-back round of 160 images per client, the ratio's spread was",
    "12-25% from run to run; with four alternating blocks of 64 per round (and",
    "smaller blocks for the references, which took most of the time), 5-11% over",
    "six runs at load 2.4 to 4.6. How many faults the floor takes per image is set",
    "for its process's life (about 30 in one run, 280 in another), and that moves",
    "the median between runs, 0.76x to 1.01x. The instruction counts hardly move,",
    "0.30x-0.31x in every run: flux_sdk lifts the base64 out of the body and decodes",
    "it in place, the floor parses the whole body into a `str` first. CPU time is",
    "mostly the kernel's (receives, page faults, file writes) and memory copies,",
    "which instruction counts do not see.",
]


def spread(values: list[float]) -> float:
    """Interquartile range over the median (0 with fewer than two values)."""
    if len(values) < 2:
        return 0.0
    low, _, high = statistics.quantiles(values, n=4, method="inclusive")
    return (high - low) / statistics.median(values)


def order(turn: int, blocks: int) -> list[str]:
    """One round's blocks: the pair in alternating order (AB BA AB BA, then BA AB ... in
    the next round), so each goes first as often as the other and each block of one has
    a block of the other beside it; the references one block each, before the pair in
    one round and after it in the next."""
    pair = [c for b in range(blocks) for c in (CLIENTS if (b + turn) % 2 == 0 else CLIENTS[::-1])]
    others = list(ALL[len(CLIENTS) :] if turn % 4 < 2 else ALL[: len(CLIENTS) - 1 : -1])
    return [*pair, *others] if turn % 2 == 0 else [*others, *pair]


def compare(
    url: str, rounds: int, sizes: Sizes, log: Any, keep_memory: bool = False
) -> dict[str, Any]:
    """Run the rounds; log each, and return every figure (milliseconds of CPU per image)."""
    processes = {client: start(client, url, sizes.warmup, keep_memory) for client in ALL}
    per_image: dict[str, list[float]] = {client: [] for client in ALL}
    faults: dict[str, list[float]] = {client: [] for client in ALL}
    pair_blocks: list[tuple[str, float]] = []  # the pair's blocks, in the order they ran
    try:
        for turn in range(rounds):
            cpu = dict.fromkeys(ALL, 0.0)
            minor = dict.fromkeys(ALL, 0.0)
            images = dict.fromkeys(ALL, 0)
            for client in order(turn, sizes.blocks):
                count = sizes.block if client in CLIENTS else sizes.reference
                result = one_block(processes[client], count)
                cpu[client] += result["cpu"]
                if client in CLIENTS:
                    pair_blocks.append((client, result["cpu"] / count * 1000))
                minor[client] += result["minor_faults"]
                images[client] += count
            for client in ALL:
                per_image[client].append(cpu[client] / images[client] * 1000)
                faults[client].append(minor[client] / images[client])
            floor = per_image["floor_issue"][-1]
            log(
                f"  round {turn + 1:2}: floor {floor:6.2f} ms  "
                + "  ".join(
                    f"{LABELS[c]} {per_image[c][-1]:6.2f} ms ({per_image[c][-1] / floor:4.2f}x)"
                    for c in ALL[1:]
                )
            )
    finally:
        for process in processes.values():
            assert process.stdin is not None
            process.stdin.close()
            process.wait(timeout=60)
    against = {
        client: [b / a for a, b in zip(per_image["floor_issue"], per_image[client], strict=True)]
        for client in ALL[1:]
    }
    ratios = against["flux_sdk"]
    return {
        "rounds": rounds,
        "keep_memory": keep_memory,
        "images_per_round": sizes.blocks * sizes.block,
        "blocks": sizes.blocks,
        "reference_images": sizes.reference,
        "warmup": sizes.warmup,
        "ms_per_image": per_image,
        "faults_per_image": faults,
        "ratios": ratios,
        "against_floor": against,
        "median_ratio": statistics.median(ratios),
        "ratio_spread": spread(ratios),
        "pooled_ratio": sum(per_image["flux_sdk"]) / sum(per_image["floor_issue"]),
        "spread": {client: spread(values) for client, values in per_image.items()},
        "median_ms": {client: statistics.median(values) for client, values in per_image.items()},
        "order_effect": order_effect(pair_blocks),
    }


def order_effect(blocks: list[tuple[str, float]]) -> dict[str, float]:
    """Whether going first or second biases a block: the median ratio of flux_sdk's block
    over the floor's beside it (blocks in twos, AB or BA), by which of them went first."""
    ratios: dict[str, list[float]] = {client: [] for client in CLIENTS}
    for (first, a), (_, b) in zip(blocks[::2], blocks[1::2], strict=True):
        ratios[first].append(b / a if first == "floor_issue" else a / b)
    return {client: statistics.median(values) for client, values in ratios.items() if values}


def summary(figures: dict[str, Any]) -> list[str]:
    median, ratio_spread = figures["median_ratio"], figures["ratio_spread"]
    met = median <= GOAL and ratio_spread < SPREAD_GOAL
    lines = [
        f"CPU per 2 MiB image at concurrency {CONCURRENCY}, {figures['rounds']} interleaved "
        f"rounds after {figures['warmup']} warm-up; in each, {figures['images_per_round']} "
        f"images for the floor and flux_sdk in {figures['blocks']} alternating blocks, "
        f"{figures['reference_images']} for each reference:",
    ]
    for client in ALL:
        ms, faults = figures["median_ms"][client], figures["faults_per_image"][client]
        text = (
            f"  {LABELS[client]} {ms:.2f} ms (spread {figures['spread'][client]:.0%}, "
            f"{statistics.median(faults):.0f} page faults per image)"
        )
        ratios = figures["against_floor"].get(client)
        if ratios:
            text += (
                f": {statistics.median(ratios):.2f}x the floor (median of rounds, "
                f"spread {spread(ratios):.0%})"
            )
        lines.append(text)
    floor_faults = figures["faults_per_image"]["floor_issue"]
    floor_ms = figures["ms_per_image"]["floor_issue"]
    if max(floor_faults) >= 20 and len(set(floor_faults)) > 1 and len(set(floor_ms)) > 1:
        fit = statistics.linear_regression(floor_faults, floor_ms)
        lines.append(
            f"  the floor's rounds against their page faults: correlation "
            f"{statistics.correlation(floor_faults, floor_ms):.2f} (least-squares fit "
            f"{fit.slope * 1000:+.2f} us per fault, {fit.intercept:.2f} ms at none)"
        )
    counted = figures.get("instructions")
    if counted:
        per_image = counted["median"]
        lines.append(
            f"  instructions per image under callgrind (user space, {counted['blocks']} "
            f"blocks of {counted['block']}): floor {per_image['floor_issue'] / 1e6:.1f} M, "
            f"flux_sdk {per_image['flux_sdk'] / 1e6:.1f} M: {counted['median_ratio']:.2f}x "
            f"(range {min(counted['ratios']):.2f}x-{max(counted['ratios']):.2f}x)"
        )
    effect = figures.get("order_effect", {})
    if len(effect) == 2:
        lines.append(
            f"  block by block, flux_sdk over the floor beside it: {effect['floor_issue']:.2f}x "
            f"when the floor went first, {effect['flux_sdk']:.2f}x when flux_sdk did"
        )
    return [
        *lines,
        f"  flux_sdk over the floor: median {median:.2f}x, spread {ratio_spread:.0%}, "
        f"range {min(figures['ratios']):.2f}x-{max(figures['ratios']):.2f}x, all rounds "
        f"pooled {figures['pooled_ratio']:.2f}x",
        f"goal: median at most {GOAL}x with a spread under {SPREAD_GOAL:.0%}: "
        + ("met" if met else "missed"),
    ]


def section(figures: dict[str, Any], command: str, when: str, load: float) -> str:
    """The page's ``floor8`` section: the figures of one run, the command and the load."""
    ms, faults = figures["ms_per_image"], figures["faults_per_image"]["floor_issue"]
    kept = figures.get("keep_memory")
    title = ", glibc keeping freed memory" if kept else ""
    how = (
        [
            "Here every client ran with `MALLOC_MMAP_THRESHOLD_=32MiB` and",
            "`MALLOC_TRIM_THRESHOLD_=1TiB` (`--keep-memory`): glibc serves large blocks",
            "from its heap and keeps what is freed, so no client pays page faults for",
            "memory it freed an image ago. The run without it is the section above.",
        ]
        if kept
        else []
    )
    rows = [
        "| "
        + " | ".join(
            [str(turn + 1), f"{ms['floor_issue'][turn]:.2f}", f"{faults[turn]:.0f}"]
            + [f"{ms[c][turn]:.2f} ({ms[c][turn] / ms['floor_issue'][turn]:.2f}x)" for c in ALL[1:]]
        )
        + " |"
        for turn in range(figures["rounds"])
    ]
    return "\n".join(
        [
            f"## CPU per 2 MiB image at concurrency 8, interleaved rounds (issue 26){title}",
            "",
            "The issue's floor (8 asyncio streams from `asyncio.open_connection`, a",
            "hand-written HTTP/1.1 POST, headers read line by line, `readexactly` of",
            "Content-Length, `pydantic_core.from_json`, `pybase64.b64decode(...,",
            "validate=True)`) against `FluxClient(Dataoorts(...), max_concurrency=8)`,",
            "with raw httpx and openai-python (as in the tables above) for reference.",
            "Each runs in a warm process of its own (one warm-up batch first), then they",
            "take turns, never two at once. A round gives the floor and flux_sdk blocks",
            "of images in alternation (AB BA AB BA, BA AB BA AB in the next round), so",
            "each goes first as often as the other and the machine's drift within a round",
            "falls on both; the references run one smaller block each, before the pair in",
            "one round and after it in the next. A round's figure is its blocks' process",
            "CPU time (user and system, `time.process_time()` in the worker, ramp and",
            "drain included) over their images, every image written to a file the same",
            "way for all. A ratio is a client's round over the floor's round of the same",
            "turn; spread: the interquartile range of the rounds over their median. The",
            "instruction counts (`_instructions.py`) are the cross-check that load cannot",
            "move: user-space instructions only, the client slowed some 50 times by",
            "valgrind, so its receives find fuller socket buffers than when timed.",
            *how,
            f"From one run, `{command}`, {when}, load average {load:.2f} at its start:",
            "**noisy**, on a 2-core machine shared with other jobs.",
            "",
            *(f"- {line.strip()}" for line in summary(figures)),
            "",
            *([] if kept else [*WHERE, ""]),
            "| round | floor, ms | its faults per image | "
            + " | ".join(f"{LABELS[c]}, ms" for c in ALL[1:])
            + " |",
            "|---:|---:|---:|" + "---:|" * (len(ALL) - 1),
            *rows,
        ]
    )


def run(args: Any, command: str, emulator: Any, log: Any) -> int:
    """``bench.py --floor8``: the rounds against bench.py's 2 MiB emulator; a full run
    (not ``--quick``) writes the page's ``floor8`` section."""
    from _instructions import count
    from _marked import write_marked

    rounds = args.rounds or (4 if args.quick else 16)
    sizes = Sizes(2, 16, 16, 16) if args.quick else Sizes(4, 64, 48, 32)
    workload = next(w for w in WORKLOADS if w.key == "2mib")
    load = os.getloadavg()[0]
    with emulator(workload) as (url, _, body):
        log(f"{workload.title}: {url}, {body:,} bytes per answer, load {load:.2f}")
        figures = compare(url, rounds, sizes, log, args.keep_memory)
        if not args.keep_memory:
            log("instructions under callgrind (about a minute)")
            blocks, block = (2, 8) if args.quick else (4, 32)
            figures["instructions"] = count(url, CLIENTS, blocks, block, sizes.warmup)
    for line in summary(figures):
        log(line)
    if not args.quick:
        when = f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC"
        text = section(figures, command, when, load)
        name = "floor8-kept" if args.keep_memory else "floor8"
        write_marked(args.output or HERE.parent / "docs" / "benchmarks.md", name, text)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))
    return 0
