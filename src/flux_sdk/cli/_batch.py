"""``flux-sdk batch``: read the prompts, check them all, run them into a directory."""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

from flux_sdk import (
    BadRequestError,
    BudgetExceeded,
    FluxError,
    GenerateRequest,
    InvalidRequestError,
)
from flux_sdk._batching._shards import manifest_name
from flux_sdk._spend._ledger import Ledger, usd

from ._console import note
from ._progress import Progress, duration
from ._prompts import Prompts, read_prompts
from ._providers import Chosen, choose_provider, error_line, explain_fallback, open_client
from ._shard import by_index, shard_total

__all__ = ["run_batch"]

_MAX_LISTED = 10  # bad lines or failed items shown before "and N more"


def run_batch(args: argparse.Namespace) -> int:
    import anyio

    try:
        data = sys.stdin.buffer.read() if args.prompts == "-" else Path(args.prompts).read_bytes()
        # Bytes, not text mode: its universal newlines would split at a lone \r too.
        text = data.decode("utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        note(f"flux-sdk: error: cannot read {args.prompts}: {exc}")
        return 2
    try:
        chosen = choose_provider(args)
    except FluxError as exc:
        note(error_line(exc, None))
        return 1
    prompts = read_prompts(text, seed=args.seed, steps=args.steps, check=chosen.check)
    if prompts.problems:
        _list("flux-sdk: error: nothing was sent; fix these lines first:", prompts.problems)
        explain_fallback(chosen)
        return 2
    if not prompts.requests:
        note(f"flux-sdk: error: {args.prompts} holds no prompts")
        return 2
    mode = args.progress
    if mode == "auto":
        mode = "bar" if _is_terminal() else "lines"
    progress = Progress(sys.stderr, mode, total=shard_total(len(prompts.requests), args.shard))
    try:
        outcome, ledger = anyio.run(_run, args, chosen, prompts.requests, progress)
    except KeyboardInterrupt:
        progress.close()
        p = progress.last
        note(
            f"flux-sdk: interrupted at {p.finished}/{p.total}: {p.done} new images saved in "
            f"{args.out_dir}. Run the same command again to finish the rest."
        )
        return 130
    except FluxError as exc:
        progress.close()
        note(error_line(exc, chosen))
        return 1
    progress.close()
    p = progress.last
    note(
        f"{p.done} done, {p.skipped} skipped (already there), {p.failed} failed, "
        f"{p.retries} retries, in {duration(p.elapsed)}; manifest: "
        f"{Path(args.out_dir) / manifest_name(args.shard)}"
    )
    note(ledger.summary() + ("" if args.budget is None else f" (budget {usd(args.budget)})"))
    not_run = [r for r in outcome if isinstance(r, BudgetExceeded) and r.attempts == 0]
    if not_run:
        note(
            f"budget reached: {_items(len(not_run))} not started; run the same command "
            "again with a higher --budget to go on (what is saved is kept)"
        )
        outcome = [None if r in not_run else r for r in outcome]
    return _report_failures(outcome, prompts, args.prompts, chosen) or (1 if not_run else 0)


async def _run(
    args: argparse.Namespace,
    chosen: Chosen,
    requests: list[GenerateRequest],
    progress: Progress,
) -> tuple[list[object], Ledger]:
    async with contextlib.AsyncExitStack() as stack:
        client = await open_client(args, chosen, stack, max_concurrency=args.concurrency)
        results = await client.generate_many(
            requests,
            save_dir=args.out_dir,
            keep_images=False,
            on_progress=progress,
            max_retries=args.max_retries,
            budget=args.budget,
            shard=args.shard,
        )
    return by_index(list(results), len(requests), args.shard), client.ledger


def _report_failures(outcome: list[object], prompts: Prompts, source: str, chosen: Chosen) -> int:
    """List failed items by their line in the file, with advice that can help: another
    run for a failure that may pass, a fix of the line for a request that cannot."""
    failed = [
        (prompts.lines[index], result)
        for index, result in enumerate(outcome)
        if isinstance(result, FluxError)
    ]
    if not failed:
        return 0
    name = "standard input" if source == "-" else source
    _list(
        f"failed (by line of {name}):",
        [f"line {line}: {type(error).__name__}: {error}" for line, error in failed],
    )
    retryable = [e for _, e in failed if e.retryable]
    invalid = [
        e
        for _, e in failed
        if isinstance(e, (InvalidRequestError, BadRequestError)) and not e.retryable
    ]
    other = len(failed) - len(invalid) - len(retryable)
    if invalid:
        note(
            f"{_items(len(invalid))} refused as invalid: fix those lines; running the same "
            "command again unchanged would send the same requests"
        )
    if retryable:
        note(f"{_items(len(retryable))} may pass: run the same command again to retry them")
    if other:
        note(f"{_items(other)} failed for a reason above: fix it, then run the same command again")
    explain_fallback(chosen)
    return 1


def _items(count: int) -> str:
    return f"{count} item" if count == 1 else f"{count} items"


def _list(heading: str, lines: list[str]) -> None:
    note(heading)
    for line in lines[:_MAX_LISTED]:
        note(f"  {line}")
    if len(lines) > _MAX_LISTED:
        note(f"  ... and {len(lines) - _MAX_LISTED} more")


def _is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (OSError, ValueError):
        return False
