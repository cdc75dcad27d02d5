"""Reading a prompts file for ``flux-sdk batch``: its lines, and a request for each.

Lines end at ``\\n`` or ``\\r\\n`` and nowhere else. ``str.splitlines`` would also split
at form feeds, U+2028 and the other Unicode line boundaries, cutting prompts (and JSON
strings, where U+2028 may appear raw) where the user did not.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from flux_sdk import GenerateRequest, InvalidRequestError

__all__ = ["Prompts", "read_prompts", "split_lines"]

_LINE_END = re.compile(r"\r?\n")


def split_lines(text: str) -> list[str]:
    """The lines of ``text``, split at ``\\n`` and ``\\r\\n`` only; a final line end
    does not start another line."""
    lines = _LINE_END.split(text)
    if lines[-1] == "":
        lines.pop()
    return lines


@dataclass(frozen=True, slots=True)
class Prompts:
    """What a prompts file asks for: ``requests[i]`` came from file line ``lines[i]``
    (counted from 1, blank and comment lines included); ``problems`` has a line for
    each line that is not a valid request."""

    requests: list[GenerateRequest] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def read_prompts(
    text: str,
    *,
    seed: int | None = None,
    steps: int | None = None,
    check: Callable[[GenerateRequest], None] | None = None,
) -> Prompts:
    """Requests from a prompts file, each also passed to ``check`` (a provider's rules).

    One prompt a line, or JSONL when the first item starts with ``{``: an object per
    line with `GenerateRequest`'s fields. Blank lines and lines starting with ``#`` are
    skipped. Item i (counting items, not lines) gets ``seed + i`` unless it sets its
    own, so repeated prompts still differ.
    """
    items = [
        (number, line.strip())
        for number, line in enumerate(split_lines(text), 1)
        if line.strip() and not line.strip().startswith("#")
    ]
    jsonl = bool(items) and items[0][1].startswith("{")
    found = Prompts()
    for index, (number, line) in enumerate(items):
        try:
            fields = _fields(line) if jsonl else _text(line)
            if seed is not None:
                fields.setdefault("seed", seed + index)
            if steps is not None:
                fields.setdefault("steps", steps)
            request = GenerateRequest(**fields)
            if check is not None:
                check(request)
        except InvalidRequestError as exc:
            found.problems.append(f"line {number}: {exc}")
        else:
            found.requests.append(request)
            found.lines.append(number)
    return found


def _text(line: str) -> dict[str, object]:
    if "\r" in line:
        # Only an old Mac file or a stray byte puts one here; either way it is not
        # what the user meant to send.
        raise InvalidRequestError(
            "a carriage return (\\r) that does not end the line; lines end at \\n or "
            "\\r\\n only: convert the file's line endings"
        )
    return {"prompt": line}


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
