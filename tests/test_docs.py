"""Every ```python block in README.md and docs/ runs as printed, or is marked as not run.

Each block runs in a fresh Python process, in a directory of its page's own, with the
emulator on a loopback port standing in for the providers: ``DATAOORTS_*``,
``BASETEN_*`` and ``OPENAI_*`` point at it, as the emulator page tells a user to do.
Scripts run with ``python``; a block that awaits at the top level runs the way
``python -m asyncio`` would run it; ``# test_*.py`` files run with pytest, their async
tests on asyncio and on trio. tests/_docs.py says how a block is marked.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
import inspect
import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from flux_sdk.emulator import DEFAULT_API_KEY

from ._docs import Block, pages, python_blocks

# The lead is rewriting these pages (middleware, retries, the flow section of custom
# providers); their markers live here until the new text carries its own. Keyed by page
# and the block's first line. An entry that matches no unmarked block fails the test, and
# so does an "xfail" block that runs: drop its entry once the page is right.
# Markers kept outside a page while its blocks were being rewritten; empty now, kept so a
# page under rework can be listed here instead of failing the suite.
INTERIM: dict[tuple[str, str], str] = {}

PROVIDER_VARIABLES = (
    "DATAOORTS_API_KEY",
    "DATAOORTS_BASE_URL",
    "BASETEN_API_KEY",
    "BASETEN_MODEL_ID",
    "BASETEN_BASE_URL",
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "TOGETHER_API_KEY",
    "TOGETHER_BASE_URL",
    "OPENAI_IMAGES_API_KEY",
    "OPENAI_IMAGES_BASE_URL",
)
# Blocks that show a served emulator say so with its default address: the session's
# own emulator stands in for it.
PRINTED_EMULATOR = "http://127.0.0.1:8787"

# A docs test's async tests run on both backends, as the project's own do.
CONFTEST = """\
import pytest


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request):
    return request.param
"""

# A block with a top-level await, run as `python -m asyncio` would run it.
TOP_LEVEL_AWAIT = """\
import ast, asyncio, sys
path = sys.argv[1]
with open(path, encoding="utf-8") as f:
    code = compile(f.read(), path, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
asyncio.run(eval(code, {"__name__": "__main__"}))
"""


def _with_interim(block: Block) -> Any:
    interim = INTERIM.get((block.page, block.code.split("\n", 1)[0]))
    if interim is None or block.marker is not None:
        return pytest.param(block, id=block.where)
    if interim.startswith("xfail"):
        mark = pytest.mark.xfail(reason=interim, strict=True)
        return pytest.param(block, id=block.where, marks=mark)
    return pytest.param(dataclasses.replace(block, marker=interim), id=block.where)


PARAMS = [_with_interim(b) for page in pages() for b in python_blocks(page)]
ALL_BLOCKS: list[Block] = [p.values[0] for p in PARAMS]


def test_each_interim_marker_belongs_to_one_unmarked_block() -> None:
    for page, first_line in INTERIM:
        found = [
            b
            for p in pages()
            for b in python_blocks(p)
            if (b.page, b.code.split("\n", 1)[0]) == (page, first_line)
        ]
        assert len(found) == 1, f"{page}: no single block starts with {first_line!r}"
        assert found[0].marker is None, f"{found[0].where} has its own marker now: drop it here"


def test_most_blocks_run() -> None:
    """A guard against marking the way out: a skip needs a reason, and most blocks run."""
    skipped = [b for b in ALL_BLOCKS if b.marker and b.marker.startswith("skip")]
    assert all(b.skip_reason for b in skipped)
    assert len(skipped) < len(ALL_BLOCKS) / 2, [b.where for b in skipped]


def _environment(emulator_url: str, *, providers: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in PROVIDER_VARIABLES}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    if providers:
        env.update(
            DATAOORTS_API_KEY=DEFAULT_API_KEY,
            DATAOORTS_BASE_URL=f"{emulator_url}/api/v1",
            BASETEN_API_KEY=DEFAULT_API_KEY,
            BASETEN_BASE_URL=emulator_url,
            OPENAI_API_KEY=DEFAULT_API_KEY,
            OPENAI_BASE_URL=f"{emulator_url}/v1",
            TOGETHER_API_KEY=DEFAULT_API_KEY,
            TOGETHER_BASE_URL=f"{emulator_url}/together",
            OPENAI_IMAGES_API_KEY=DEFAULT_API_KEY,
            OPENAI_IMAGES_BASE_URL=f"{emulator_url}/v1",
        )
    return env


def _awaits_at_top_level(block: Block) -> bool:
    code = compile(block.code, block.where, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    return bool(code.co_flags & inspect.CO_COROUTINE)


def _runs(block: Block) -> bool:
    if block.skip_reason:
        return False
    return not block.requires or importlib.util.find_spec(block.requires) is not None


def _run(block: Block, page_dir: Path, emulator_url: str) -> subprocess.CompletedProcess[str]:
    """Run one block in a new process: a test file with pytest, a module by importing it,
    anything else as a script in a directory of its own (with the page's files on the path)."""
    env = _environment(emulator_url, providers=block.marker != "no-env")
    name = block.filename
    where = page_dir
    if name and name.startswith("test_"):
        # Plugins load only when named: anyio's, which the tests use (startup 2 s -> 0.2 s).
        env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
        command += ["-p", "anyio.pytest_plugin", "-rA", name]
    elif name:
        command = [sys.executable, "-c", f"import {name.removesuffix('.py')}"]
    else:
        where = page_dir / f"block_{block.line}"
        where.mkdir()
        code = block.code.replace(PRINTED_EMULATOR, emulator_url)
        (where / "block.py").write_text(code, encoding="utf-8")
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(page_dir), env.get("PYTHONPATH")]))
        if _awaits_at_top_level(block):
            command = [sys.executable, "-c", TOP_LEVEL_AWAIT, "block.py"]
        else:
            command = [sys.executable, "block.py"]
    return subprocess.run(
        command, cwd=where, env=env, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.fixture(scope="module")
def page_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A directory per page, holding its ``# name.py`` blocks and a conftest."""
    dirs: dict[str, Path] = {}
    for block in ALL_BLOCKS:
        if block.page not in dirs:
            dirs[block.page] = tmp_path_factory.mktemp(Path(block.page).stem)
            (dirs[block.page] / "conftest.py").write_text(CONFTEST)
        if block.filename and not block.skip_reason:
            (dirs[block.page] / block.filename).write_text(block.code, encoding="utf-8")
    return dirs


@pytest.fixture(scope="module")
def runs(
    page_dirs: dict[str, Path], emulator_url: str
) -> Iterator[dict[str, Future[subprocess.CompletedProcess[str]]]]:
    """Every block that runs, started at once on a process per core: the tests wait."""
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        yield {
            b.where: pool.submit(_run, b, page_dirs[b.page], emulator_url)
            for b in ALL_BLOCKS
            if _runs(b)
        }


def _check_pytest_outcomes(block: Block, output: str) -> None:
    """Every test passed (none skipped), and each async one on asyncio and on trio."""
    outcomes = [line.split(" ", 2)[:2] for line in output.splitlines() if "::" in line]
    assert outcomes, f"{block.where}: pytest ran no test"
    assert all(word == "PASSED" for word, _ in outcomes), f"{block.where}:\n{output}"
    names = {name for _, name in outcomes}
    for name in names:
        if name.endswith("[asyncio]"):
            assert name.replace("[asyncio]", "[trio]") in names, f"{block.where}: {name}"


@pytest.mark.parametrize("block", PARAMS)
def test_block_runs_as_printed(
    block: Block, runs: dict[str, Future[subprocess.CompletedProcess[str]]]
) -> None:
    if block.skip_reason:
        pytest.skip(f"marked: {block.skip_reason}")
    if block.where not in runs:
        pytest.skip(f"needs {block.requires}, which is not installed")
    done = runs[block.where].result()
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{block.where} failed:\n{output}"
    assert "Exception ignored" not in done.stderr, f"{block.where}:\n{done.stderr}"
    assert DEFAULT_API_KEY not in output, f"{block.where} printed the API key"
    if block.filename and block.filename.startswith("test_"):
        _check_pytest_outcomes(block, done.stdout)
