"""The northstar: one batch over three emulated hosts from W processes, end to end.

Three emulator processes, each one wire format (Dataoorts, Together, fal's queue) with
its own hidden ``Capacity`` (4, 8 and 16 replicas, 0.4 s a job) and 5% mixed faults; a
real ``redis-server``; W worker processes, each running the documented recipe (one
`FluxClient` over ``Route(provider, max_concurrency=SharedLimit(...))`` per host,
``routing="balanced"``, ``generate_many(..., save_dir=..., shard=(k, W))``, otherwise
defaults). It prints one JSON line and writes a plot:

    python benchmarks/northstar.py [--prompts 20000] [--workers 8] [--plot PATH]

Goal: wall time within 1/0.9 of the least possible (N x service / total replicas), no
item lost, no index written twice, no job billed twice, ledgers equal to billed counts.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
KEY = "emulator-key"
# Host, wire format, replicas; every job takes SERVICE seconds on its host.
HOSTS = (("dataoorts", 4), ("together", 8), ("fal", 16))
SERVICE = 0.4
FAULTS = "429,500,502,503,reset,truncated,invalid_json,invalid_base64,html"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve(host: str, port: int, replicas: int, fault_rate: float, seed: int) -> None:
    """One emulator process: only ``host`` is limited (and faulted, as all are)."""
    import uvicorn

    from flux_sdk.emulator import Capacity, EmulatorApp, Fault, FaultPlan

    chosen = [Fault(name) for name in FAULTS.split(",")]
    app = EmulatorApp(
        default_size=256,
        capacity={host: Capacity(replicas=replicas, median=SERVICE, seed=seed)},
        faults=FaultPlan(rate=fault_rate, kinds=chosen, seed=seed),
    )
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", timeout_keep_alive=600
    )
    uvicorn.Server(config).run()


async def work(k: int, settings: dict[str, Any]) -> dict[str, Any]:
    """One worker: the recipe of docs/scaling.md, on shard k of W."""
    from flux_sdk import Dataoorts, Fal, FluxClient, FluxError, Route, SharedLimit, Together

    urls, redis = settings["urls"], settings["redis"]
    providers = {
        "dataoorts": Dataoorts(KEY, base_url=urls["dataoorts"] + "/api/v1"),
        "together": Together(KEY, base_url=urls["together"] + "/together"),
        "fal": Fal(KEY, base_url=urls["fal"]),
    }
    routes = [
        Route(
            providers[name],
            max_concurrency=SharedLimit(redis, name, concurrency=replicas),
            # Not the recipe (which keeps the defaults): --weighted shows what weights add.
            **({"weight": replicas} if settings["weighted"] else {}),
        )
        for name, replicas in HOSTS
    ]
    prompts = [f"northstar prompt {i}" for i in range(settings["prompts"])]
    async with FluxClient(routes, routing="balanced") as flux:
        # Ready: the client made and what its first call loads imported (SharedLimit's
        # Redis client is imported on first use). The batch starts when every worker is.
        import redis.asyncio

        Path(settings["out"], f".ready-{k}").touch()  # noqa: ASYNC240 - before the batch
        await asyncio.to_thread(sys.stdin.readline)
        results = await flux.generate_many(
            prompts, save_dir=settings["out"], keep_images=False, shard=(k, settings["workers"])
        )
        spend = flux.ledger.hosts
    failed = [r for r in results if isinstance(r, FluxError)]
    return {
        "ok": len(results) - len(failed),
        "failed": len(failed),
        "errors": dict(collections.Counter(type(e).__name__ for e in failed)),
        "failures": dict(
            collections.Counter(f"{e.provider} {e.step} {type(e).__name__}" for e in failed)
        ),
        "ledger": {
            host: {"attempts": s.attempts, "billed": s.billed, "maybe": s.maybe_billed}
            for host, s in spend.items()
        },
    }


@contextlib.contextmanager
def started(commands: list[list[str]]) -> Iterator[list[subprocess.Popen[bytes]]]:
    procs = [
        subprocess.Popen(c, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for c in commands
    ]
    try:
        yield procs
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


def wait_http(url: str) -> None:
    for _ in range(200):
        with contextlib.suppress(OSError):
            urllib.request.urlopen(url, timeout=1).close()  # noqa: S310 - loopback only
            return
        time.sleep(0.05)
    raise SystemExit(f"northstar: {url} did not come up")


def wait_redis(port: int) -> None:
    for _ in range(200):
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1) as s:
            s.sendall(b"PING\r\n")
            if s.recv(16).startswith(b"+PONG"):
                return
        time.sleep(0.05)
    raise SystemExit("northstar: redis-server did not come up")


def stats(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url + "/_emulator/stats", timeout=10) as answer:  # noqa: S310
        return dict(json.load(answer)["hosts"])


class Timeline(threading.Thread):
    """The emulators' counters read every 0.5 s while the batch runs: where time goes."""

    def __init__(self, urls: dict[str, str], began: float) -> None:
        super().__init__(daemon=True)
        self.urls, self.began = urls, began
        self.samples: list[dict[str, Any]] = []
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.wait(0.5):
            at = round(time.perf_counter() - self.began, 2)
            with contextlib.suppress(OSError):
                hosts = {name: stats(url).get(name, {}) for name, url in self.urls.items()}
                self.samples.append({"t": at, "hosts": hosts})

    def stop(self) -> None:
        self._done.set()
        self.join()


def on_disk(out: Path) -> dict[str, int]:
    """Images on disk, manifest lines with a file, and indices written more than once."""
    names = [n for n in os.listdir(out) if n.endswith((".png", ".jpg", ".webp"))]
    written: collections.Counter[int] = collections.Counter()
    for manifest in out.glob("manifest*.jsonl"):
        for line in manifest.read_text().splitlines():
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if "file" in record:
                    written[record["index"]] += 1
    temps = [n for n in os.listdir(out) if n.endswith(".tmp")]
    return {
        "files": len(names),
        "indices_with_two_files": len(names) - len({n[:6] for n in names}),
        "written_twice": sum(1 for c in written.values() if c > 1),
        "partial_files": len(temps),
    }


def plot(summary: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hosts = [name for name, _ in HOSTS]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    wall, least = summary["wall_seconds"], summary["least_seconds"]
    left.bar(["least possible", "measured"], [least, wall], color=["#999", "#3465a4"])
    startup = summary.get("startup_seconds", 0.0)
    left.bar(["measured"], [startup], bottom=[wall], color="#ccc", label="workers starting")
    left.legend(loc="lower right")
    left.set_ylabel("seconds")
    left.set_title(f"{summary['prompts']} prompts, {summary['workers']} workers: "
                   f"{summary['of_capacity']:.2f}x of capacity")  # fmt: skip
    per = summary["hosts"]
    x = range(len(hosts))
    right.bar([i - 0.2 for i in x], [per[h]["billed"] for h in hosts], 0.4, label="host billed")
    right.bar(
        [i + 0.2 for i in x],
        [per[h]["ledger_billed"] + per[h]["ledger_maybe"] for h in hosts],
        0.4,
        label="ledgers (billed + maybe)",
    )
    right.set_xticks(list(x), [f"{h}\n{r} replicas" for h, r in HOSTS])
    right.set_title("jobs billed, by host")
    right.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=20_000)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--fault-rate", type=float, default=0.05)
    parser.add_argument(
        "--weighted", action="store_true", help="give each route weight=replicas (not the recipe)"
    )
    parser.add_argument("--plot", type=Path, default=ROOT / "docs/img/northstar.png")
    parser.add_argument(
        "--timeline", type=Path, help="write the emulators' counters, read every 0.5 s"
    )
    parser.add_argument("--serve", nargs=3, metavar=("HOST", "PORT", "REPLICAS"))
    parser.add_argument("--work", type=int, metavar="K")
    parser.add_argument("--settings")
    args = parser.parse_args()
    if args.serve:
        host, port, replicas = args.serve
        serve(host, int(port), int(replicas), args.fault_rate, int(port) % 1000)
        return
    if args.work is not None:
        print(json.dumps(asyncio.run(work(args.work, json.loads(args.settings)))))
        return
    run(args)


def run(args: argparse.Namespace) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    os.environ.update(env)
    redis_port = free_port()
    ports = {name: free_port() for name, _ in HOSTS}
    me = [sys.executable, str(Path(__file__).resolve())]
    servers = [
        ["/usr/bin/redis-server", "--port", str(redis_port), "--save", "", "--appendonly", "no"]
    ]
    servers += [
        [
            *me,
            "--serve",
            name,
            str(ports[name]),
            str(replicas),
            "--fault-rate",
            str(args.fault_rate),
        ]
        for name, replicas in HOSTS
    ]
    out = Path(tempfile.mkdtemp(prefix="northstar-"))
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    with started(servers):
        wait_redis(redis_port)
        for url in urls.values():
            wait_http(url + "/_emulator/stats")
        settings = {
            "urls": urls,
            "redis": f"redis://127.0.0.1:{redis_port}/0",
            "prompts": args.prompts,
            "workers": args.workers,
            "out": str(out),
            "weighted": args.weighted,
        }
        launched = time.perf_counter()
        # Output to files, not pipes: a worker never blocks on a pipe nobody reads yet.
        logs = [(out / f".out-{k}", out / f".err-{k}") for k in range(args.workers)]
        workers = []
        for k, (stdout, stderr) in enumerate(logs):
            command = [*me, "--work", str(k), "--settings", json.dumps(settings)]
            with stdout.open("wb") as o, stderr.open("wb") as e:
                workers.append(subprocess.Popen(command, stdin=subprocess.PIPE, stdout=o, stderr=e))
        ready = [out / f".ready-{k}" for k in range(args.workers)]
        while not all(r.exists() for r in ready):
            if any(w.poll() is not None for w in workers):
                break  # a worker died before it was ready: its report says why
            time.sleep(0.02)
        began = time.perf_counter()
        for worker in workers:  # go: every worker starts its shard now
            with contextlib.suppress(OSError):
                assert worker.stdin is not None
                worker.stdin.write(b"go\n")
                worker.stdin.close()
        timeline = Timeline(urls, began)
        timeline.start()
        for worker in workers:
            worker.wait()
        wall = time.perf_counter() - began
        timeline.stop()
        outputs = [(o.read_bytes(), e.read_bytes()) for o, e in logs]
        seen = {name: stats(url).get(name, {}) for name, url in urls.items()}
    reports = []
    for worker, (stdout, stderr) in zip(workers, outputs, strict=True):
        if worker.returncode != 0:
            raise SystemExit(f"northstar: a worker failed:\n{stderr.decode()[-3000:]}")
        reports.append(json.loads(stdout.decode().splitlines()[-1]))
    summary = summarise(args, wall, reports, seen, on_disk(out))
    # What the workers logged (a SharedLimit falling back to local limits, say), counted.
    logged: collections.Counter[str] = collections.Counter()
    for _, stderr in outputs:
        for line in stderr.decode(errors="replace").splitlines():
            if line.strip() and not line.startswith(" "):
                logged[line[:160]] += 1
    summary["worker_log"] = dict(logged.most_common(8))
    summary["startup_seconds"] = round(began - launched, 2)
    summary["wall_with_startup_seconds"] = round(wall + began - launched, 2)
    summary["of_capacity_with_startup"] = round(
        summary["least_seconds"] / summary["wall_with_startup_seconds"], 3
    )
    summary["load_average"] = [round(x, 2) for x in os.getloadavg()]
    if args.timeline is not None:
        args.timeline.write_text(json.dumps(timeline.samples))
    print(json.dumps(summary, sort_keys=True))
    shutil.rmtree(out, ignore_errors=True)
    plot(summary, args.plot)


def summarise(
    args: argparse.Namespace,
    wall: float,
    reports: list[dict[str, Any]],
    seen: dict[str, dict[str, Any]],
    disk: dict[str, int],
) -> dict[str, Any]:
    least = args.prompts * SERVICE / sum(replicas for _, replicas in HOSTS)
    hosts = {}
    for name, _ in HOSTS:
        ledgers = [r["ledger"].get(name, {}) for r in reports]
        host = seen[name]
        hosts[name] = {
            "billed": host.get("billed", 0),
            "ledger_billed": sum(s.get("billed", 0) for s in ledgers),
            "ledger_maybe": sum(s.get("maybe", 0) for s in ledgers),
            "requests": host.get("requests", 0),
            "ledger_attempts": sum(s.get("attempts", 0) for s in ledgers),
            "repeated": host.get("repeated", 0),
            "refused_429": host.get("refused", 0),
            "faults": host.get("faults", {}),
            "max_in_service": host.get("max_in_service"),
        }
    errors: collections.Counter[str] = collections.Counter()
    failures: collections.Counter[str] = collections.Counter()
    for report in reports:
        errors.update(report["errors"])
        failures.update(report["failures"])
    ok = sum(r["ok"] for r in reports)
    return {
        "prompts": args.prompts,
        "workers": args.workers,
        "weighted": args.weighted,
        "wall_seconds": round(wall, 2),
        "least_seconds": round(least, 2),
        "of_capacity": round(least / wall, 3),
        "ok": ok,
        "failed": sum(r["failed"] for r in reports),
        "errors": dict(errors),
        "failures": dict(failures),
        "lost": args.prompts - ok - sum(r["failed"] for r in reports),
        **disk,
        "jobs_billed_twice": sum(h["repeated"] for h in hosts.values()),
        "429s": sum(h["refused_429"] + h["faults"].get("429", 0) for h in hosts.values()),
        "ledgers_equal_billed": all(
            h["ledger_billed"] <= h["billed"] <= h["ledger_billed"] + h["ledger_maybe"]
            for h in hosts.values()
        ),
        "hosts": hosts,
    }


if __name__ == "__main__":
    main()
