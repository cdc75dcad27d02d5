"""A script's own section of docs/benchmarks.md, between its markers."""

from __future__ import annotations

from pathlib import Path


def write_marked(page: Path, name: str, text: str) -> None:
    """Put ``text`` in ``page`` as the marked section ``name``, in place of the old one
    (or at the end): each script owns its section, and bench.py's page keeps them."""
    start, end = f"<!-- {name}: start -->", f"<!-- {name}: end -->"
    block = f"{start}\n{text.strip()}\n{end}"
    old = page.read_text() if page.exists() else "# Benchmarks\n"
    if start in old and end in old:
        head, rest = old.split(start, 1)
        new = head + block + rest.split(end, 1)[1]
    else:
        new = old.rstrip("\n") + "\n\n" + block + "\n"
    page.write_text(new)
