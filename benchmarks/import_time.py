"""What a program's first image costs in imports, against flux_sdk's dependencies (issue 26).

"First generate" is exactly what a program pays before its first image: importing
``FluxClient`` and ``Dataoorts``, building ``FluxClient(Dataoorts(...))`` (its TLS
context included), and every module the first ``generate`` loads. That last list is
found, not guessed: a discovery run generates one image against the emulator on loopback
and records every module that appeared in ``sys.modules``; the timed runs then import
those same modules in the same order, without a server.

The baseline is the issue's: ``import httpx, anyio, pydantic, tenacity``. Each figure is
the best of N fresh interpreters (the least disturbed by the other processes on a shared
machine), the cases interleaved. Every module is compiled first and the interpreters
read their .pyc files, as after ``pip install``: this machine sets
``PYTHONDONTWRITEBYTECODE=1``, which would make every run compile flux_sdk again.

httpcore imports trio whenever trio is installed (``httpcore.TrioBackend``), even on
asyncio; flux_sdk's ``trio`` extra installs it. The second ratio hides trio, as on an
install without that extra (flux_sdk's own connections load neither httpcore nor trio,
so both ratios should now agree). "dependencies as used" (`USED`) shows how much of the
rest is the dependencies' own machinery, which any program using them loads.

The discovery program imports asyncio before flux_sdk, as any program on asyncio does
(``asyncio.run``), so asyncio is not in the list; but anyio's asyncio backend imports it,
so the timed first generate pays for it and the baseline does not. The rows "asyncio
loaded" import asyncio before the timer in both cases, as the program's own event loop:
the strict rows stay the goal's figures, these say what the loop itself weighs.

    python benchmarks/import_time.py [N] [--page]   # N = 7 by default; about 15 seconds
                                                    # --page: docs/benchmarks.md's section
"""

from __future__ import annotations

import compileall
import datetime
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
DEPS = "import httpx, anyio, pydantic, tenacity"
BUILD = (
    "from flux_sdk import FluxClient, Dataoorts; "
    "client = FluxClient(Dataoorts(api_key='k', base_url='{url}'))"
)
HIDE_TRIO = "import sys; sys.modules['trio'] = None; "
LOOP = "import asyncio; "  # the program's event loop, loaded before the timer starts
# The dependencies as any program loads them that runs anyio on asyncio: asyncio, and
# anyio's asyncio backend (loaded at the first anyio call that needs the event loop).
USED = DEPS + "; import asyncio; import anyio._backends._asyncio"
PAGE = """## A first generate's imports (issue 26)

Best of {runs} fresh interpreters, .pyc present, against `{deps}`. "First generate":
importing `FluxClient` and `Dataoorts`, building `FluxClient(Dataoorts(...))`, and the
{n} modules one real generate against the emulator loaded (found by a run, imported in
the same order). "no trio": the same with trio hidden, as on an install without the
`trio` extra (httpcore imports trio whenever it is installed). "asyncio loaded": the
same with asyncio imported before the timer in both cases, as a program's own
`asyncio.run` has (the strict rows charge asyncio to the first generate alone, since
anyio's backend imports it). From one run,
`python benchmarks/import_time.py {runs} --page`, {when}, load average {load:.2f}:
**noisy**, on a 2-core machine shared with other jobs.

"""
NOTES = """
Where the rest goes. Beyond the four: asyncio (about 9 ms) and anyio's asyncio backend
with the modules it imports (about 18 ms), which any program that runs anyio on asyncio
loads ("dependencies as used"); then flux_sdk's own share, its 50-odd modules (the
client, its limits, retry, routing steps, ledger and pricing, the provider, the lean
HTTP/1.1 connections, the image checks) and building the client: 16 ms, from 25 ms
(best of 30 fresh interpreters that import the four, asyncio, anyio's backend and
pybase64 before the timer, the two versions interleaved, load 2.3-2.6, 2026-12-07).

What came off its path. Python 3.11 builds a dataclass by compiling each method it
writes at import, half a millisecond to a millisecond a class: `Step`, `Wait`,
`Accepted` and `Ended` are plain slotted classes now, and `ParamRules`, `Price` and
`GeneratedImage` stay frozen dataclasses that inherit `__eq__`, `__hash__` and
`__repr__` from one base instead (`_base/_frozen.py`). `FluxEvent` loads with a
client's first event (`EventHook`, in the client's signature, is a callback protocol
that does not name it at run time), `HostSpend` and `RouteState` when a spend or a
route's state is read; `statistics` with a percentile hedge;
SharedLimit's Redis side when one is made; a flow's download checks at its first
download; opentelemetry is looked for without `importlib.util`. Earlier: pydantic's
model machinery (`GenerateRequest` is checked by a pydantic-core schema, keys are
flux_sdk's own `SecretStr`: about 30 ms), httpcore, h11 and (when installed) trio, which
flux_sdk's own connections do not need; opentelemetry-api is imported only once the
application has imported it; the CA certificates (~20 ms) load at the first TLS
handshake. tests/test_public_api.py checks that a first generate loads none of the
modules that came off its path this time, tests/test_request_core.py pydantic's.

What is left is about 0.1 ms a module, and the three dataclasses' `__init__` and frozen
`__setattr__` (about 0.7 ms each). Not done: skipping anyio's asyncio backend on
asyncio. Every anyio primitive on a call's path (cancel scopes, events, semaphores,
sleeps, socket waits) goes through it, so that would take asyncio primitives of
flux_sdk's own beside anyio's, with anyio's cancellation semantics to match.
"""
GOAL = 1.3  # issue 26: at most 1.3x `import httpx, anyio, pydantic, tenacity`

DISCOVER = """
import sys
{hide}
import asyncio
before = set(sys.modules)
from flux_sdk import FluxClient, Dataoorts
from flux_sdk.emulator import DEFAULT_API_KEY
built = set(sys.modules)
async def main():
    async with FluxClient(Dataoorts(api_key=DEFAULT_API_KEY, base_url={url!r})) as client:
        image = await client.generate("a lighthouse at dawn")
        image.save({path!r})
asyncio.run(main())
print(" ".join(m for m in sys.modules if m not in built and not m.startswith("flux_sdk.emulator")))
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def discover(env: dict[str, str], hide: str) -> list[str]:
    """The modules a first generate loads after the client is built, in load order."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, str(HERE / "_emulator.py"), str(port), "200000", "256"], env=env
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("the emulator did not start") from None
                time.sleep(0.1)
        url = f"http://127.0.0.1:{port}/api/v1"
        image = Path(tempfile.gettempdir()) / f"flux-import-{port}.png"
        code = DISCOVER.format(hide=hide, url=url, path=str(image))
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
        )
        image.unlink(missing_ok=True)
        return out.stdout.split()
    finally:
        server.terminate()
        server.wait()


def measure(statement: str, env: dict[str, str], hide: str = "") -> float:
    """Milliseconds for ``statement`` in a fresh interpreter; ``hide`` runs untimed first."""
    code = (
        f"{hide}import time; t = time.perf_counter(); {statement}; print(time.perf_counter() - t)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    return float(out.stdout) * 1000


def first_generate(modules: list[str]) -> str:
    build = BUILD.format(url="http://127.0.0.1:9/api/v1")
    return f"{build}; import importlib; [importlib.import_module(m) for m in {modules!r}]"


def main() -> None:
    numbers = [arg for arg in sys.argv[1:] if arg.isdigit()]
    runs = int(numbers[0]) if numbers else 7
    load = os.getloadavg()[0]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPATH"] = str(ROOT / "src")
    compileall.compile_dir(ROOT / "src" / "flux_sdk", quiet=1)
    loaded = discover(env, "")
    loaded_no_trio = discover(env, HIDE_TRIO)
    cases: dict[str, tuple[str, str]] = {
        "dependencies": (DEPS, ""),
        "first generate": (first_generate(loaded), ""),
        "dependencies, no trio": (DEPS, HIDE_TRIO),
        "first generate, no trio": (first_generate(loaded_no_trio), HIDE_TRIO),
        "dependencies, asyncio loaded": (DEPS, LOOP),
        "first generate, asyncio loaded": (first_generate(loaded), LOOP),
        "dependencies as used": (USED, ""),
        "import flux_sdk": ("import flux_sdk", ""),
    }
    bases = {
        "first generate": "dependencies",
        "first generate, no trio": "dependencies, no trio",
        "first generate, asyncio loaded": "dependencies, asyncio loaded",
    }
    for statement, hide in cases.values():
        measure(statement, env, hide)  # writes any .pyc still missing
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(runs):  # interleaved, so drift hits every case alike
        for name, (statement, hide) in cases.items():
            times[name].append(measure(statement, env, hide))
    best = {name: min(values) for name, values in times.items()}
    print(f"best of {runs} fresh interpreters, .pyc present; baseline `{DEPS}`")
    print(f"a first generate loads {len(loaded)} modules more, {len(loaded_no_trio)} without trio")
    rows = []
    for name, value in best.items():
        base = best[bases.get(name, name if name.startswith("dependencies,") else "dependencies")]
        print(f"{name:30} {value:7.1f} ms  {value / base:5.2f}x")
        rows.append(f"| {name} | {value:.1f} | {value / base:.2f}x |")
    own = best["first generate"] / best["dependencies as used"]
    print(f"first generate over the dependencies as used: {own:.2f}x")
    goals = []
    for name, baseline in bases.items():
        ratio = best[name] / best[baseline]
        verdict = "met" if ratio <= GOAL else "missed"
        goals.append(f"goal: {name} at most {GOAL}x the dependencies: {ratio:.2f}x, {verdict}")
        print(goals[-1])
    if "--page" in sys.argv[1:]:
        sys.path.insert(0, str(HERE))
        from _marked import write_marked

        when = f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC"
        text = PAGE.format(runs=runs, deps=DEPS, when=when, load=load, n=len(loaded))
        rows.append(f"| first generate over the dependencies as used | | {own:.2f}x |")
        text += "\n".join(["| case | ms | ratio |", "|---|---:|---:|", *rows, "", *goals])
        write_marked(ROOT / "docs" / "benchmarks.md", "import-time", text + "\n" + NOTES)


if __name__ == "__main__":
    main()
