"""Instructions per image under callgrind: a cross-check of ``--floor8`` that load cannot move.

CPU time per image moves with whatever else the machine runs (caches, frequency, how
the server's writes interleave with the client's reads). Valgrind's callgrind counts the
instructions a process executes in user space, the same from run to run whatever the
load. The floor and flux_sdk run warm under ``callgrind --instr-atstart=no``; the parent
switches counting on for one block of images at a time (``callgrind_control``), in
turns, and reads each block's total from its dump. What it does not count: the
kernel's work (receives, page faults, file writes), and under valgrind the client is
some 50 times slower than the server, so its receives find fuller socket buffers than
in the timed rounds. A cross-check, then, not the goal's figure.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from _blocks import one_block, start


def control(pid: int, *args: str) -> None:
    subprocess.run(["callgrind_control", *args, str(pid)], check=True, capture_output=True)


def total(dump: Path) -> int:
    """The ``totals:`` line of one callgrind dump: instructions executed (Ir)."""
    for line in dump.read_text().splitlines():
        if line.startswith("totals:"):
            return int(line.split()[1])
    raise RuntimeError(f"no totals in {dump}")


def count(
    url: str, pair: tuple[str, str], blocks: int, block: int, warmup: int
) -> dict[str, Any] | None:
    """Instructions per image of ``pair``, block by block; None without valgrind."""
    if not (shutil.which("valgrind") and shutil.which("callgrind_control")):
        return None
    directory = Path(tempfile.mkdtemp(prefix="flux-callgrind-"))
    processes = {}
    try:
        for client in pair:
            out = directory / f"{client}.out"
            under = ("valgrind", "-q", "--tool=callgrind", "--instr-atstart=no")
            processes[client] = start(
                client, url, warmup, False, (*under, f"--callgrind-out-file={out}")
            )
        per_image: dict[str, list[float]] = {client: [] for client in pair}
        for turn in range(blocks):
            for client in pair if turn % 2 == 0 else pair[::-1]:
                pid = processes[client].pid
                control(pid, "-i", "on")
                one_block(processes[client], block)
                control(pid, "-i", "off")
                control(pid, "-d")  # a dump per block, numbered .1, .2, ...
                dump = directory / f"{client}.out.{len(per_image[client]) + 1}"
                per_image[client].append(total(dump) / block)
    finally:
        for process in processes.values():
            assert process.stdin is not None
            process.stdin.close()
            process.wait(timeout=120)
        shutil.rmtree(directory, ignore_errors=True)
    ratios = [b / a for a, b in zip(*per_image.values(), strict=True)]
    return {
        "blocks": blocks,
        "block": block,
        "per_image": per_image,
        "ratios": ratios,
        "median_ratio": statistics.median(ratios),
        "median": {client: statistics.median(values) for client, values in per_image.items()},
    }
