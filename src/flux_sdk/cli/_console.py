"""Writing to standard output and error without ever ending in a traceback.

A command's output may go to a pipe that closes early (``| head``) or to a full device.
Python ignores SIGPIPE, so such writes raise ``OSError``; left alone they end in a
traceback, and a failed flush at exit also turns the exit code into 120. Here a stream
that fails is pointed at the null device, so nothing more is lost and the exit code
stays the command's own.
"""

from __future__ import annotations

import os
import sys
import warnings
from typing import Any, TextIO

__all__ = ["StdoutError", "note", "one_line_warnings", "print_result", "silence", "write"]


class StdoutError(Exception):
    """Standard output could not be written (a closed pipe, a full disk)."""


def write(stream: TextIO, text: str) -> bool:
    """Write and flush ``text``; False, and the stream silenced, if it could not be."""
    try:
        stream.write(text)
        stream.flush()
    except (OSError, ValueError):  # ValueError: the stream was already closed
        silence(stream)
        return False
    return True


def note(line: str) -> bool:
    """One line on standard error; a broken standard error is not an error of its own."""
    return write(sys.stderr, line + "\n")


def print_result(line: str) -> None:
    """The command's result on standard output; `StdoutError` if it cannot be written."""
    try:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
    except (OSError, ValueError) as exc:
        silence(sys.stdout)
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise StdoutError(reason) from None


def silence(stream: TextIO) -> None:
    """Point a stream that failed at the null device, so that what it still holds in
    its buffer is dropped at exit instead of failing again there."""
    try:
        fd = stream.fileno()
        null = os.open(os.devnull, os.O_WRONLY)
    except (OSError, ValueError):
        return  # not a real file (a test's StringIO): nothing is flushed at exit
    try:
        os.dup2(null, fd)
    finally:
        os.close(null)


def one_line_warnings() -> None:
    """Show each warning (a `FluxWarning`) as one ``flux-sdk: warning:`` line."""

    def show(message: Warning | str, category: type[Warning], *_: Any, **__: Any) -> None:
        note(f"flux-sdk: warning: {message}")

    warnings.showwarning = show
