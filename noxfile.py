"""Automation: `nox` runs the whole check (tests on asyncio and trio, lint, types, docs)."""

from __future__ import annotations

import os

import nox

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["tests", "lint", "typecheck", "docs"]

PYPROJECT = nox.project.load_toml("pyproject.toml")


def _group(name: str) -> list[str]:
    return nox.project.dependency_groups(PYPROJECT, name)


@nox.session
def tests(session: nox.Session) -> None:
    """The test suite; every async test runs on asyncio and on trio."""
    session.install("-e", ".", *_group("test"))
    session.run("pytest", *session.posargs)


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
    session.run(
        "flux-sdk", "generate", prompt, "--seed", "7", "--out", "astronaut", *session.posargs
    )


@nox.session
def imports(session: nox.Session) -> None:
    """How long `import flux_sdk` takes against its dependencies alone."""
    session.install("-e", ".")
    session.run("python", "benchmarks/import_time.py", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """flux_sdk against raw httpx, raw aiohttp and openai-python; writes docs/benchmarks.md.

    About 7 minutes on 2 cores; ``nox -s bench -- --quick`` is a smoke test under a
    minute that writes its page to a temporary file instead.
    """
    session.install("-e", ".", *_group("bench"))
    session.run("python", "benchmarks/bench.py", *session.posargs)


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
