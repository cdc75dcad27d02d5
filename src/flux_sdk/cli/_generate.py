"""``flux-sdk generate``: one image, saved, its path printed on standard output."""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

from flux_sdk import FluxError

from ._console import StdoutError, note, print_result
from ._providers import Chosen, choose_provider, error_line, open_client
from ._save import save, target

__all__ = ["run_generate"]


def run_generate(args: argparse.Namespace) -> int:
    import anyio

    chosen: Chosen | None = None
    try:
        path = target(args.out, args.prompt, force=args.force)
        chosen = choose_provider(args)
        path = anyio.run(_generate, args, chosen, path)
    except FluxError as exc:
        note(error_line(exc, chosen))
        return 1
    try:
        print_result(str(path))
    except StdoutError as exc:
        note(f"flux-sdk: error: saved {str(path)!r}, but could not print its path: {exc}")
        return 1
    return 0


async def _generate(args: argparse.Namespace, chosen: Chosen, path: Path) -> Path:
    from anyio import to_thread

    async with contextlib.AsyncExitStack() as stack:
        client = await open_client(args, chosen, stack)
        image = await client.generate(
            args.prompt, seed=args.seed, steps=args.steps, width=args.width, height=args.height
        )
    return await to_thread.run_sync(lambda: save(image, path, force=args.force))
