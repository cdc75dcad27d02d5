"""Automation: `nox` runs the whole check (tests on asyncio and trio, lint, types, docs,
and the built wheel installed and run)."""

from __future__ import annotations

import os
import shutil
import sys
import zipfile
from pathlib import Path

import nox

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["tests", "scale", "conformance", "lint", "typecheck", "docs", "build"]

PYPROJECT = nox.project.load_toml("pyproject.toml")


def _group(name: str) -> list[str]:
    return nox.project.dependency_groups(PYPROJECT, name)


@nox.session
def tests(session: nox.Session) -> None:
    """The test suite; every async test runs on asyncio and on trio."""
    session.install("-e", ".", *_group("test"))
    session.run("pytest", *session.posargs)


@nox.session
def scale(session: nox.Session) -> None:
    """More than one process: SharedLimit on a real redis-server (started by the tests;
    .ci/run installs it) and Ray Data on a local Ray instance (tests/scale)."""
    session.install("-e", ".[redis,ray]", *_group("test"))
    session.run("pytest", "-m", "scale", "tests/scale", *session.posargs)


@nox.session
def conformance(session: nox.Session) -> None:
    """flux_sdk against each host's official Python client (pinned in the conformance
    group): the same request on one loopback server, and the official client served an
    image by the emulator (tests/conformance; about 15 s)."""
    session.install("-e", ".", *_group("test"), *_group("conformance"))
    session.run("pytest", "-m", "conformance", "tests/conformance", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff: lint rules (the ASYNC ones included) and formatting."""
    session.install(*_group("lint"))
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict over the package and the tests."""
    session.install("-e", ".", *_group("typecheck"))
    session.run("mypy")


@nox.session
def docs(session: nox.Session) -> None:
    """Build the documentation site; warnings are errors."""
    session.install("-e", ".", *_group("docs"))
    session.env["NO_MKDOCS_2_WARNING"] = "1"  # a banner from mkdocs-material, not a docs problem
    session.run(
        "mkdocs", "build", "--strict", "--site-dir", os.path.join(session.create_tmp(), "site")
    )


@nox.session
def demo(session: nox.Session) -> None:
    """The main job: one image through the full stack (the emulator when no key is set)."""
    session.install("-e", ".")
    prompt = "a tiny astronaut hatching from an egg on the moon"
    # --force: the demo writes the same file each time it runs.
    session.run(
        "flux-sdk", "generate", prompt, "--seed", "7", "--out", "astronaut", "--force",
        *session.posargs,
    )  # fmt: skip


@nox.session
def northstar(session: nox.Session) -> None:
    """The end-to-end scale benchmark (not a default session: minutes of three hosts,
    Redis and W workers): ``nox -s northstar -- --prompts 1000 --workers 4``."""
    session.install("-e", ".[redis,emulator]", "matplotlib")
    session.run("python", "benchmarks/northstar.py", *session.posargs)


@nox.session
def build(session: nox.Session) -> None:
    """Build the sdist and the wheel, check them, and run the CLI from the wheel.

    The wheel goes into a fresh virtual environment with no extras and no source tree on
    the path, and ``flux-sdk generate`` runs from it with no API key set, so the emulator
    answers in process: a module left out of the wheel fails here, not for a user.
    """
    session.install(*_group("build"))
    tmp = Path(session.create_tmp()).resolve()
    dist = tmp / "dist"
    shutil.rmtree(dist, ignore_errors=True)
    session.run("python", "-m", "build", "--outdir", str(dist))
    (wheel,) = dist.glob("*.whl")
    (sdist,) = dist.glob("*.tar.gz")
    session.run("twine", "check", "--strict", str(wheel), str(sdist))
    session.run("check-wheel-contents", str(wheel))
    names = zipfile.ZipFile(wheel).namelist()
    for needed in ("flux_sdk/py.typed", "flux_sdk/cli/__init__.py", "flux_sdk/emulator/_font.py"):
        if needed not in names:
            session.error(f"{wheel.name} lacks {needed}")

    venv = tmp / "wheel-venv"
    shutil.rmtree(venv, ignore_errors=True)
    session.run(sys.executable, "-m", "venv", str(venv), external=True)
    bin_dir = venv / ("Scripts" if sys.platform == "win32" else "bin")
    python = str(bin_dir / "python")
    session.run(python, "-m", "pip", "install", "--quiet", str(wheel), external=True)
    out = tmp / "astronaut"
    no_keys = {"DATAOORTS_API_KEY": "", "BASETEN_API_KEY": "", "PYTHONPATH": ""}
    session.run(
        str(bin_dir / "flux-sdk"), "generate", "a tiny astronaut hatching from an egg",
        "--seed", "7", "--out", str(out), "--force",
        env=no_keys, external=True,
    )  # fmt: skip
    image = out.with_suffix(".png")
    if not image.read_bytes().startswith(b"\x89PNG\r\n\x1a\n"):
        session.error(f"flux-sdk generate from the wheel wrote no PNG at {image}")


@nox.session
def imports(session: nox.Session) -> None:
    """How long `import flux_sdk` takes against its dependencies alone."""
    session.install("-e", ".")
    session.run("python", "benchmarks/import_time.py", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """flux_sdk against raw httpx, raw aiohttp and openai-python; writes docs/benchmarks.md.

    About 11 minutes on 2 cores; ``nox -s bench -- --quick`` is a smoke test under a
    minute that writes its page to a temporary file instead.
    """
    session.install("-e", ".", *_group("bench"))
    session.run("python", "benchmarks/bench.py", *session.posargs)


@nox.session(name="bench-routing")
def bench_routing(session: nox.Session) -> None:
    """Routing over several emulated hosts (an outage, a heavy tail, two capacities);
    writes the figures into docs/routing.md. About 12 minutes (each tail setting runs 5
    times); ``-- --quick`` prints a smaller run instead."""
    session.install("-e", ".", *_group("bench"))
    session.run("python", "benchmarks/routing.py", *session.posargs)


@nox.session
def capacity(session: nox.Session) -> None:
    """A batch against hosts of hidden capacity (48, 96, 192 replicas): completion time,
    429s and where the time went per client; writes its section of docs/benchmarks.md
    and docs/img/capacity-*.png. About 8 minutes; ``nox -s capacity -- --quick`` is a
    smoke test."""
    session.install("-e", ".", *_group("bench"))
    session.run("python", "benchmarks/capacity.py", *session.posargs)


@nox.session
def reliability(session: nox.Session) -> None:
    """The whole suite with the reliability scenarios at full count (1,000-prompt batches,
    10,000 cancellations, 10,000 fuzz examples per provider); writes docs/reliability.md."""
    session.install("-e", ".", *_group("test"))
    report = os.path.join(session.create_tmp(), "reliability.json")
    if os.path.exists(report):
        os.remove(report)
    env = {"FLUX_SDK_RELIABILITY": "full", "FLUX_SDK_RELIABILITY_REPORT": report}
    session.run("pytest", "-q", "-p", "no:cacheprovider", *session.posargs, env=env)
    session.run("python", "-m", "tests._reliability", report, "docs/reliability.md")
