"""Where one client's CPU goes on one bench.py workload: cProfile or pyinstrument.

Starts the emulator as bench.py does, warms the client up, then profiles the measured
requests only. cProfile counts calls, so it gives microseconds per call (and inflates
small functions); pyinstrument samples, so its shares are closer to the truth.

    python benchmarks/profile_client.py flux_sdk 2mib 16 [--count 160] [--pyinstrument]
    python benchmarks/profile_client.py httpx small 16
    python benchmarks/profile_client.py floor 2mib 16   # the hand-written reference
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _worker import CLIENTS, TRIO_CLIENTS, run_batch
from bench import WORKLOADS, emulator


async def session(
    client: str, url: str, concurrency: int, count: int, args: argparse.Namespace
) -> None:
    from contextlib import AsyncExitStack

    async with AsyncExitStack() as stack:
        generate = await CLIENTS[client](url, concurrency, stack)

        def ignore(index: int, image: bytes) -> None:
            pass

        await run_batch(generate, 0, max(concurrency, 8), concurrency, ignore)
        cpu = time.process_time()
        if args.pyinstrument:
            from pyinstrument import Profiler

            profiler = Profiler(interval=0.0005, async_mode="disabled")
            profiler.start()
            await run_batch(generate, 0, count, concurrency, ignore)
            profiler.stop()
            print(profiler.output_text(unicode=False, color=False, show_all=False))
        else:
            # The default (wall) timer: a CPU-time timer costs a system call per event,
            # which triples the run and drowns what it measures. Profile on a quiet machine.
            profile = cProfile.Profile(time.process_time) if args.cpu else cProfile.Profile()
            profile.enable()
            await run_batch(generate, 0, count, concurrency, ignore)
            profile.disable()
            stats = pstats.Stats(profile)
            stats.sort_stats(args.sort).print_stats(args.top)
        cpu = time.process_time() - cpu
        print(f"{client}: {cpu / count * 1e6:.0f} us CPU per image (with the profiler on)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("client", choices=list(CLIENTS))
    parser.add_argument("workload", choices=[w.key for w in WORKLOADS])
    parser.add_argument("concurrency", type=int)
    parser.add_argument("--count", type=int, default=0, help="default: the full run's count")
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--sort", default="tottime", help="a pstats key, e.g. cumulative")
    parser.add_argument("--pyinstrument", action="store_true")
    parser.add_argument(
        "--cpu",
        action="store_true",
        help="time CPU rather than wall (slower; right on a busy machine, where wall time "
        "also counts the time other processes held the core)",
    )
    args = parser.parse_args()
    workload = next(w for w in WORKLOADS if w.key == args.workload)
    count = args.count or workload.counts.get(args.concurrency, 200)
    with emulator(workload) as (url, _pid, _body):
        backend = "trio" if args.client in TRIO_CLIENTS else "asyncio"
        anyio.run(session, args.client, url, args.concurrency, count, args, backend=backend)


if __name__ == "__main__":
    main()
