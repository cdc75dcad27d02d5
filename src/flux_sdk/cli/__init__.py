"""The ``flux-sdk`` command: generate an image, run a batch, or serve the emulator.

``main`` parses and dispatches; each command lives in a module of its own, imported
only when it runs, so ``flux-sdk --help`` stays quick.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ._console import note, one_line_warnings, silence
from ._parser import build_parser

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command in ``argv`` (default: ``sys.argv[1:]``); return its exit code."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error (already printed)
        _flush_stdout()
        return exc.code if isinstance(exc.code, int) else 2
    one_line_warnings()
    try:
        return _dispatch(args.command, args)
    except KeyboardInterrupt:
        note("flux-sdk: interrupted")
        return 130


def _dispatch(command: str, args: argparse.Namespace) -> int:
    if command == "generate":
        from ._generate import run_generate

        return run_generate(args)
    if command == "batch":
        from ._batch import run_batch

        return run_batch(args)
    from ._emulator import run_emulator

    return run_emulator(args)


def _flush_stdout() -> None:
    """Help sent into a closed pipe: argparse ignores the failed write, but the
    interpreter's own flush at exit would fail again and print a traceback."""
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        silence(sys.stdout)
