"""Counts for the reliability scenarios, and where their figures go.

Every scenario runs in the normal suite with small counts. Two environment variables
change that, so a reliability run (``nox -s reliability``) can ask for the full counts
and collect what they measured:

- ``FLUX_SDK_RELIABILITY=full`` selects the full counts (anything else, or nothing,
  selects the quick ones). It is read here and nowhere else.
- ``FLUX_SDK_RELIABILITY_REPORT=/some/path.json`` makes `record` merge each scenario's
  figures into that JSON file, creating it if needed::

      {
        "mode": "full",
        "scenarios": {
          "fuzz.parse_response.dataoorts": {"examples": 10000, "seconds": 31.2},
          "cancellation.trio": {"requests": 10000, "cancelled": 3012, ...}
        }
      }

  A scenario recorded twice (a test run again) keeps the latest figures. Without the
  variable, `record` does nothing.

It also holds `SecretWatch`, which conftest.py uses to fail the suite if any API key
shows up in a log record, an error or a repr anywhere in the session.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flux_sdk import FluxClient


MODE_VARIABLE = "FLUX_SDK_RELIABILITY"
REPORT_VARIABLE = "FLUX_SDK_RELIABILITY_REPORT"

FULL = os.environ.get(MODE_VARIABLE, "").strip().lower() == "full"
MODE = "full" if FULL else "quick"

_lock = threading.Lock()


def count(quick: int, full: int) -> int:
    """``full`` when the full reliability run was asked for, else ``quick``."""
    return full if FULL else quick


def record(scenario: str, **figures: int | float | str | bool) -> None:
    """Merge ``figures`` for ``scenario`` into the report file, if one was asked for."""
    path = os.environ.get(REPORT_VARIABLE)
    if not path:
        return
    target = Path(path)
    with _lock:
        try:
            report = json.loads(target.read_text(encoding="utf-8"))
        except FileNotFoundError:
            report = {}
        report["mode"] = MODE
        report.setdefault("scenarios", {})[scenario] = figures
        target.parent.mkdir(parents=True, exist_ok=True)
        # Written whole then renamed: a reader never sees half a report.
        fd, temp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            json.dump(report, file, indent=2, sort_keys=True)
            file.write("\n")
        os.replace(temp, target)


# Secrets: every API key the suite uses, and every place one was seen in clear text.


class SecretWatch:
    """Remembers the API keys in use and checks texts for them, recording each leak.

    conftest.py feeds it every log record, every FluxError, the repr and str of every
    public flux_sdk object and the exceptions that end a test; the suite fails at the
    end if `leaks` is not empty. A leak is reported with the key blanked out.
    """

    min_chars = 5  # shorter "keys" would match ordinary words

    def __init__(self, keys: Iterable[str] = ()) -> None:
        self.keys: tuple[str, ...] = ()
        self.leaks: list[str] = []
        self.checked: Counter[str] = Counter()
        self.where = "(outside any test)"
        for key in keys:
            self.add_key(key)

    def add_key(self, key: object) -> None:
        """Watch for ``key`` (a str or a pydantic SecretStr) from now on."""
        if hasattr(key, "get_secret_value"):
            key = key.get_secret_value()
        if isinstance(key, str):
            key = key.strip()
            if len(key) >= self.min_chars and key not in self.keys:
                self.keys = (*self.keys, key)  # a new tuple: other threads may be iterating

    def check(self, kind: str, *texts: str) -> None:
        """Record a leak for each of ``texts`` that holds a watched key."""
        self.checked[kind] += 1
        for text in texts:
            for key in self.keys:
                if key in text:
                    shown = text.replace(key, "<API KEY>")
                    self.leaks.append(f"{self.where}: {kind}: {shown[:500]!r}")

    def check_exception(self, exc: BaseException, kind: str = "exception") -> None:
        """Check an exception, its causes and its group members; assertion texts excepted."""
        seen: set[int] = set()
        stack = [exc]
        while stack:
            current = stack.pop()
            if id(current) in seen:
                continue
            seen.add(id(current))
            # A test's own assertion may quote the key it checks for; that is not a leak.
            if not isinstance(current, AssertionError):
                self.check(kind, _text(str, current), _text(repr, current))
            stack += [e for e in (current.__cause__, current.__context__) if e is not None]
            stack += [e for e in getattr(current, "exceptions", ()) if isinstance(e, BaseException)]

    def report(self) -> str:
        head = f"{len(self.leaks)} place(s) showed an API key in clear text:"
        return "\n".join([head, *self.leaks[:50]])


def _text(render: Callable[[object], str], obj: object) -> str:
    try:
        return render(obj)
    except Exception as exc:  # a broken __str__ is not this check's business
        return f"<{render.__name__} failed: {type(exc).__name__}>"


class LeakHandler(logging.Handler):
    """A logging handler that hands the text of every record to a `SecretWatch`."""

    def __init__(self, watch: SecretWatch) -> None:
        super().__init__(logging.DEBUG)
        self.watch = watch
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.watch.check("log record", _formatted(self, record))


class LeakFilter(logging.Filter):
    """A logger filter that checks every record, then lets through only those at or above
    ``pass_from``: the logger can run at DEBUG for the check without flooding handlers."""

    def __init__(self, watch: SecretWatch, pass_from: int) -> None:
        super().__init__()
        self.watch = watch
        self.pass_from = pass_from
        self.formatter = logging.Formatter("%(levelname)s %(name)s %(message)s")

    def filter(self, record: logging.LogRecord) -> bool:
        self.watch.check("log record", _formatted(self.formatter, record))
        return record.levelno >= self.pass_from


def _formatted(formatter: logging.Handler | logging.Formatter, record: logging.LogRecord) -> str:
    try:
        return formatter.format(record)
    except Exception:
        return f"{record.msg!r} % {record.args!r}"


# Leaks after cancellation: connections checked out of a pool, tasks still running


def pool_state(client: FluxClient) -> dict[str, int]:
    """What a FluxClient's connection pools hold: requests in them, and their connections.

    ``requests`` counts requests holding or waiting for a connection and ``busy`` the
    connections neither idle nor closed (mid-request, or still connecting): both are 0
    when nothing is checked out. ``clients`` is how many httpx clients it has made (one
    per request it ever had in flight at once). Reads httpcore's pools, so it fails
    loudly, rather than passing, if a new httpx or httpcore moves them.
    """
    from flux_sdk._transport._http11 import Connection

    state = {"clients": 0, "requests": 0, "connections": 0, "idle": 0, "closed": 0, "busy": 0}
    clients: list[Any] = []
    for sender in client._http._connections.clients:
        if isinstance(sender, Connection):  # a lean connection: its socket, then its fallback
            state["clients"] += 1
            state["requests"] += sender.busy
            state["connections"] += sender.sock is not None
            state["idle"] += sender.sock is not None and not sender.busy
            state["busy"] += sender.busy
            if sender.fallback is not None:
                clients.append(sender.fallback)
        else:
            clients.append(sender)
    for http in clients:
        pool = http._transport._pool
        connections = list(pool.connections)
        idle = sum(1 for c in connections if c.is_idle() and not c.is_closed())
        closed = sum(1 for c in connections if c.is_closed())
        state["clients"] += http not in client._http._connections.clients
        state["requests"] += len(pool._requests)
        state["connections"] += len(connections)
        state["idle"] += idle
        state["closed"] += closed
        state["busy"] += len(connections) - idle - closed
    return state


def running_tasks() -> int:
    """How many tasks the current event loop (asyncio) or run (trio) has, this one included."""
    import asyncio

    try:
        return len(asyncio.all_tasks(asyncio.get_running_loop()))
    except RuntimeError:  # no asyncio loop: this is trio
        pass
    import trio

    count = 0
    root = trio.lowlevel.current_root_task()
    stack = [] if root is None else [root]
    while stack:
        task = stack.pop()
        count += 1
        for nursery in task.child_nurseries:
            stack.extend(nursery.child_tasks)
    return count


# The page: `python -m tests._reliability REPORT.json docs/reliability.md`

_GROUPS = {
    "batch": (
        "Batches to disk against the emulator on loopback",
        "1,000 prompts per run, 32 at a time. `faults30`: 30% of answers faulty (429 with "
        "Retry-After, 500, 502, 503, reset mid-body, short body, stall past the read "
        "timeout, invalid JSON, invalid base64, HTML with 200); goal: every file correct "
        "byte for byte, no duplicates, no leftovers, attempts <= 1.6 x requests. `outage`: "
        "every answer a 503; goal: attempts <= 1.2 x requests + 32 (a token per request in "
        "flight). `unauthorized`: every "
        "answer a 401; goal: exactly one attempt per item.",
    ),
    "cancellation": (
        "Cancellations",
        "10,000 requests, about 30% cancelled at random moments (timeouts, cancel scopes, "
        "deadlines). Goal: nothing left in the pool or running, no PoolTimeout, and the "
        "next request succeeds.",
    ),
    "fuzz": (
        "Fuzzing (hypothesis)",
        "Arbitrary statuses, headers and bodies into each provider's parsing (directly and "
        "through the client), and arbitrary user input into `generate`. Goal: only "
        "`FluxError`s or valid images; bad input refused before any request.",
    ),
    "size_cap": (
        "Size cap and decompression bombs",
        "Peak memory (tracemalloc) while a body over `max_response_bytes` is refused.",
    ),
    "secrets": (
        "Secrets",
        "Every log record at DEBUG, every `FluxError`, and the repr and str of every public "
        "object made in the whole suite, checked for every API key the suite used.",
    ),
}


def render_page(report: dict[str, object], command: str) -> str:
    """docs/reliability.md from a report file: one table per group of scenarios."""
    import platform

    scenarios = report.get("scenarios", {})
    assert isinstance(scenarios, dict)
    lines = [
        "# Reliability",
        "",
        "What the reliability suite measured in its last full run. Every scenario also runs",
        "in the normal test suite with small counts; this page comes from",
        "",
        "```bash",
        command,
        "```",
        "",
        f"run in `{report.get('mode')}` mode with Python {platform.python_version()} on",
        f"{platform.machine()} ({os.cpu_count()} cores). The figures are the run's own;"
        " every scenario's goal is asserted by its test, so the run passing means each one"
        " was met.",
        "",
    ]
    for group, (title, about) in _GROUPS.items():
        names = sorted(name for name in scenarios if name.split(".")[0] == group)
        if not names:
            continue
        lines += [f"## {title}", "", about, ""]
        if len(names) == 1:  # one scenario: a figure a row reads better than a wide row
            lines += ["| figure | value |", "|---|---:|"]
            for key, value in scenarios[names[0]].items():
                lines.append(f"| {key.replace('_', ' ')} | {_cell(value)} |")
            lines.append("")
            continue
        columns: list[str] = []
        for name in names:
            columns += [key for key in scenarios[name] if key not in columns]
        lines.append("| scenario | " + " | ".join(c.replace("_", " ") for c in columns) + " |")
        lines.append("|---|" + "---:|" * len(columns))
        for name in names:
            figures = scenarios[name]
            cells = [_cell(figures.get(column, "")) for column in columns]
            lines.append(f"| {name.partition('.')[2] or name} | " + " | ".join(cells) + " |")
        lines.append("")
    lines.append(_HOSTILE_PAGE.read_text(encoding="utf-8").rstrip("\n"))
    return "\n".join(lines)


# Not measured but proved by tests: kept on the page whatever a run recorded.
_HOSTILE_PAGE = Path(__file__).with_name("hostile_input.md")


def _cell(value: object) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.2f}"
    return str(value)


if __name__ == "__main__":
    import sys

    source, page = sys.argv[1], sys.argv[2]
    data = json.loads(Path(source).read_text(encoding="utf-8"))
    command = sys.argv[3] if len(sys.argv) > 3 else "nox -s reliability"
    Path(page).write_text(render_page(data, command) + "\n", encoding="utf-8")
    print(f"wrote {page}")
