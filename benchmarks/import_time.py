"""How long `import flux_sdk` takes, against its runtime dependencies alone.

Each figure is the median of N fresh interpreters, measured in one run so the ratios are
comparable on a noisy machine. Two baselines: the dependencies merely imported, and the
dependencies as flux_sdk must use them (pydantic's BaseModel and SecretStr load most of
pydantic; `import pydantic` alone loads almost nothing).

    python benchmarks/import_time.py [N]
"""

from __future__ import annotations

import statistics
import subprocess
import sys

CASES = {
    "deps imported": "import httpx, anyio, pydantic, pybase64",
    "deps as used": (
        "import httpx, anyio, pydantic, pybase64; "
        "from pydantic import BaseModel, SecretStr, JsonValue"
    ),
    "import flux_sdk": "import flux_sdk",
    "flux_sdk in use": "from flux_sdk import FluxClient, Dataoorts, Baseten, GenerateRequest",
}


def measure(statement: str) -> float:
    code = f"import time; t = time.perf_counter(); {statement}; print(time.perf_counter() - t)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout) * 1000


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 21
    times: dict[str, list[float]] = {name: [] for name in CASES}
    for _ in range(runs):  # interleaved, so drift hits every case alike
        for name, statement in CASES.items():
            times[name].append(measure(statement))
    medians = {name: statistics.median(values) for name, values in times.items()}
    for name, value in medians.items():
        print(f"{name:18} {value:7.1f} ms")
    for base in ("deps imported", "deps as used"):
        ratio = medians["import flux_sdk"] / medians[base]
        print(f"import flux_sdk / {base}: {ratio:.2f}x")


if __name__ == "__main__":
    main()
