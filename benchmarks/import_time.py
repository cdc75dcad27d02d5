"""How long importing flux_sdk takes, against its runtime dependencies and openai-python.

Each figure is the median of N fresh interpreters, measured in one run so the ratios are
comparable on a noisy machine. Every module is compiled first and the interpreters may
read their .pyc files, as after ``pip install``: with ``PYTHONDONTWRITEBYTECODE=1`` (set
on some CI machines) every run would compile flux_sdk's sources again and measure the
compiler, not the import (that once made flux_sdk look 2.4x its dependencies).

Two baselines: the dependencies merely imported, and the dependencies as flux_sdk must
use them (pydantic's BaseModel and SecretStr load most of pydantic; ``import pydantic``
alone loads almost nothing). ``import flux_sdk`` loads only the errors and the version;
the names load on first use, so the figure that matters is "first generate", the imports
a program needs for its first image.

    python benchmarks/import_time.py [N]
"""

from __future__ import annotations

import compileall
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEPS = "import httpx, anyio, pydantic"
CASES = {
    "httpx, anyio, pydantic": DEPS,
    "deps as used": f"{DEPS}, pybase64; from pydantic import BaseModel, SecretStr, JsonValue",
    "import flux_sdk": "import flux_sdk",
    "first generate": "from flux_sdk import FluxClient, Dataoorts, GenerateRequest",
    "everything": "from flux_sdk import *; from flux_sdk.providers import *",
    "openai-python": "from openai import AsyncOpenAI",
}
GOAL = 1.3  # issue 17: at most 1.3x `import httpx, anyio, pydantic`


def measure(statement: str, env: dict[str, str]) -> float:
    code = f"import time; t = time.perf_counter(); {statement}; print(time.perf_counter() - t)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    return float(out.stdout) * 1000


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 21
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    compileall.compile_dir(ROOT / "src" / "flux_sdk", quiet=1)
    cases = dict(CASES)
    try:
        measure(CASES["openai-python"], env)
    except subprocess.CalledProcessError:
        del cases["openai-python"]  # not installed here
    for statement in cases.values():
        measure(statement, env)  # writes any .pyc still missing
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(runs):  # interleaved, so drift hits every case alike
        for name, statement in cases.items():
            times[name].append(measure(statement, env))
    medians = {name: statistics.median(values) for name, values in times.items()}
    base = medians["httpx, anyio, pydantic"]
    print(f"median of {runs} fresh interpreters; ratio to `{DEPS}`")
    for name, value in medians.items():
        print(f"{name:24} {value:7.1f} ms  {value / base:5.2f}x")
    ratio = medians["first generate"] / base
    verdict = "met" if ratio <= GOAL else "missed"
    print(f"goal: first generate at most {GOAL}x the dependencies: {ratio:.2f}x, {verdict}")


if __name__ == "__main__":
    main()
