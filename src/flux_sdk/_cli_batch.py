"""``flux-sdk batch``: read the prompts, run them into a directory, show progress."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from ._batch import MANIFEST, BatchProgress
from ._errors import FluxError, InvalidRequestError
from ._models import GenerateRequest

__all__ = ["Progress", "read_prompts", "run_batch"]

_MAX_LISTED = 10  # bad lines or failed items shown before "and N more"


def run_batch(args: argparse.Namespace) -> int:
    import anyio

    try:
        text = sys.stdin.read() if args.prompts == "-" else Path(args.prompts).read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        print(f"flux-sdk: error: cannot read {args.prompts}: {exc}", file=sys.stderr)
        return 2
    if args.concurrency < 1:
        print("flux-sdk: error: --concurrency must be at least 1", file=sys.stderr)
        return 2
    if args.max_retries < 0:
        print("flux-sdk: error: --max-retries cannot be negative", file=sys.stderr)
        return 2
    requests, problems = read_prompts(text, seed=args.seed, steps=args.steps)
    if problems:
        _list("flux-sdk: error: nothing was sent; fix these lines first:", problems)
        return 2
    if not requests:
        print(f"flux-sdk: error: {args.prompts} holds no prompts", file=sys.stderr)
        return 2
    mode = args.progress
    if mode == "auto":
        mode = "bar" if sys.stderr.isatty() else "lines"
    progress = Progress(sys.stderr, mode)
    try:
        outcome = anyio.run(_run, args, requests, progress)
    except KeyboardInterrupt:
        progress.close()
        print(
            f"flux-sdk: interrupted; {progress.last.done} new images are saved in "
            f"{args.out_dir}. Run the same command again to finish the rest.",
            file=sys.stderr,
        )
        return 130
    except FluxError as exc:
        progress.close()
        print(f"flux-sdk: error: {exc}", file=sys.stderr)
        return 1
    progress.close()
    failed = [
        f"item {index}: {type(result).__name__}: {result}"
        for index, result in enumerate(outcome)
        if isinstance(result, FluxError)
    ]
    p = progress.last
    print(
        f"{p.done} done, {p.skipped} skipped (already there), {p.failed} failed, "
        f"{p.retries} retries, in {_duration(p.elapsed)}; manifest: "
        f"{Path(args.out_dir) / MANIFEST}",
        file=sys.stderr,
    )
    if failed:
        _list("failed (run the same command again to retry them):", failed)
        return 1
    return 0


async def _run(
    args: argparse.Namespace, requests: list[GenerateRequest], progress: Progress
) -> list[object]:
    from ._cli import _client

    async with contextlib.AsyncExitStack() as stack:
        client = await stack.enter_async_context(
            await _client(args, stack, max_concurrency=args.concurrency)
        )
        results = await client.generate_many(
            requests,
            save_dir=args.out_dir,
            keep_images=False,
            on_progress=progress,
            max_retries=args.max_retries,
        )
    return list(results)


def read_prompts(
    text: str, *, seed: int | None = None, steps: int | None = None
) -> tuple[list[GenerateRequest], list[str]]:
    """Requests from a prompts file, and a line for each problem found in it.

    One prompt a line, or JSONL when the first line that is not blank starts with
    ``{``: an object per line with `GenerateRequest`'s fields. Blank lines are skipped.
    Item i gets ``seed + i`` unless it sets its own, so repeated prompts still differ.
    """
    lines = [(number, line.strip()) for number, line in enumerate(text.splitlines(), 1)]
    lines = [(number, line) for number, line in lines if line]
    jsonl = bool(lines) and lines[0][1].startswith("{")
    requests: list[GenerateRequest] = []
    problems: list[str] = []
    for number, line in lines:
        defaults = {
            "seed": None if seed is None else seed + len(requests) + len(problems),
            "steps": steps,
        }
        try:
            fields: dict[str, object] = _fields(line) if jsonl else {"prompt": line}
            for name, value in defaults.items():
                if value is not None:
                    fields.setdefault(name, value)
            requests.append(GenerateRequest(**fields))
        except InvalidRequestError as exc:
            problems.append(f"line {number}: {exc}")
    return requests, problems


def _fields(line: str) -> dict[str, object]:
    try:
        value = json.loads(line)
    except ValueError as exc:
        raise InvalidRequestError(f"not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise InvalidRequestError(
            f'expected an object like {{"prompt": "..."}}, got {type(value).__name__}'
        )
    return value


def _list(heading: str, lines: list[str]) -> None:
    print(heading, file=sys.stderr)
    for line in lines[:_MAX_LISTED]:
        print(f"  {line}", file=sys.stderr)
    if len(lines) > _MAX_LISTED:
        print(f"  ... and {len(lines) - _MAX_LISTED} more", file=sys.stderr)


class Progress:
    """Draws `BatchProgress`: a bar redrawn in place on a terminal, or a plain line
    every few seconds for logs (``mode`` is ``"bar"``, ``"lines"`` or ``"none"``)."""

    def __init__(
        self,
        stream: TextIO,
        mode: str,
        *,
        clock: Callable[[], float] = time.monotonic,
        every: float | None = None,
    ) -> None:
        self.stream = stream
        self.mode = mode
        self.clock = clock
        self.every = every if every is not None else (0.1 if mode == "bar" else 5.0)
        self.last = BatchProgress(total=0)
        self._shown = -float("inf")
        self._drawn = False

    def __call__(self, progress: BatchProgress) -> None:
        self.last = progress
        now = self.clock()
        if progress.finished < progress.total and now - self._shown < self.every:
            return
        self._shown = now
        if self.mode == "bar":
            self.stream.write(f"\r{render(progress)}\x1b[K")
            self._drawn = True
        elif self.mode == "lines":
            self.stream.write(render(progress, bar=False) + "\n")
        self.stream.flush()

    def close(self) -> None:
        """End the bar's line, so what follows starts on a fresh one."""
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False


def render(progress: BatchProgress, *, bar: bool = True, width: int = 24) -> str:
    """One line: ``[#####-----] 512/1000  2 failed  3.4 img/s  ETA 2m31s``."""
    p = progress
    parts = [f"{p.finished}/{p.total}"]
    if bar:
        filled = width * p.finished // p.total if p.total else width
        parts.insert(0, "[" + "#" * filled + "-" * (width - filled) + "]")
    if p.skipped:
        parts.append(f"{p.skipped} skipped")
    parts.append(f"{p.failed} failed")
    parts.append(f"{p.rate:.1f} img/s")
    eta = p.eta
    parts.append("ETA " + ("?" if eta is None else _duration(eta)))
    return "  ".join(parts)


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"
