"""The ```python blocks of README.md and docs/, read as the test of the docs runs them.

A block runs unless the line before its fence (blank lines aside) is a marker, an HTML
comment that Markdown does not render:

- ``<!-- docs-test: skip (why) -->``: not run; a fragment (a signature, a sketch, a line
  that needs the code around it) or something the emulator cannot stand in for.
- ``<!-- docs-test: no-env -->``: run with none of the providers' variables set.
- ``<!-- docs-test: requires MODULE -->``: run only where MODULE can be imported.

A block whose first line is ``# name.py`` is that file: a ``test_*.py`` file is run with
pytest, any other is imported (and so can be imported by the page's tests).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

FENCE = re.compile(r"^(?P<indent> *)(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`\s]*)")
MARKER = re.compile(r"^\s*<!--\s*docs-test:\s*(?P<text>.*?)\s*-->\s*$")
SKIP = re.compile(r"^skip \((?P<why>.+)\)$")
REQUIRES = re.compile(r"^requires (?P<module>[A-Za-z_][\w.]*)$")
FILENAME = re.compile(r"^# (?P<name>[A-Za-z_]\w*\.py)\s*$")


@dataclass(frozen=True)
class Block:
    """One fenced code block: where it is, its language, its code and its marker."""

    page: str
    line: int  # the opening fence's line, from 1
    lang: str
    code: str
    marker: str | None

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"

    @property
    def filename(self) -> str | None:
        """``name.py`` when the block's first line says it is that file."""
        first = self.code.split("\n", 1)[0]
        found = FILENAME.match(first)
        return found["name"] if found else None

    @property
    def skip_reason(self) -> str | None:
        found = SKIP.match(self.marker or "")
        return found["why"] if found else None

    @property
    def requires(self) -> str | None:
        found = REQUIRES.match(self.marker or "")
        return found["module"] if found else None


class DocsError(Exception):
    """A marker that belongs to no block, or one the test cannot read."""


def pages() -> list[Path]:
    """README.md, then every page under docs/."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def read_blocks(path: Path) -> list[Block]:
    """Every fenced block of a page, with its marker; a stray marker is a DocsError."""
    page = path.relative_to(ROOT).as_posix()
    lines = path.read_text(encoding="utf-8").split("\n")
    blocks: list[Block] = []
    pending: tuple[int, str] | None = None  # a marker waiting for its block
    i = 0
    while i < len(lines):
        line = lines[i]
        marker = MARKER.match(line)
        opening = FENCE.match(line)
        if marker:
            if pending is not None:
                raise DocsError(f"{page}:{pending[0]}: a docs-test marker with no block after it")
            pending = (i + 1, marker["text"])
        elif opening:
            indent, fence = len(opening["indent"]), opening["fence"]
            body: list[str] = []
            j = i + 1
            while j < len(lines) and not re.match(
                rf"^ {{0,{indent + 3}}}{re.escape(fence[0])}{{{len(fence)},}}\s*$", lines[j]
            ):
                body.append(lines[j][indent:] if lines[j][:indent].isspace() else lines[j])
                j += 1
            lang = opening["info"].lower()
            text = pending[1] if pending else None
            if text is not None and not (
                SKIP.match(text) or REQUIRES.match(text) or text == "no-env"
            ):
                raise DocsError(f"{page}:{i + 1}: unknown docs-test marker {text!r}")
            if text is not None and lang not in ("python", "py"):
                raise DocsError(f"{page}:{i + 1}: a docs-test marker on a {lang or 'plain'} block")
            blocks.append(Block(page, i + 1, lang, _included("\n".join(body)) + "\n", text))
            pending = None
            i = j
        elif line.strip() and pending is not None:
            raise DocsError(f"{page}:{pending[0]}: a docs-test marker not right before a block")
        i += 1
    if pending is not None:
        raise DocsError(f"{page}:{pending[0]}: a docs-test marker with no block after it")
    return blocks


SNIPPET = re.compile(r'^--8<-- "(?P<path>[^"]+)"$', re.M)


def _included(code: str) -> str:
    """A block with the files it includes (``--8<-- "path"``, as mkdocs renders it)."""
    return SNIPPET.sub(lambda m: (ROOT / m["path"]).read_text(encoding="utf-8").rstrip(), code)


def python_blocks(path: Path) -> list[Block]:
    return [b for b in read_blocks(path) if b.lang in ("python", "py")]
