"""The package's layers: which part of src/flux_sdk may import which, and no import cycle.

Every import counts: module level, inside functions and under ``if TYPE_CHECKING:``, since
a type-only cycle still ties two modules together for a reader and for mypy. The table is
the one in docs/architecture.md; a test checks they agree.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"
PACKAGE = SRC / "flux_sdk"

# Each part of the package, lowest first, and what it may import besides itself and
# flux_sdk._version (a leaf everyone may read). Keep docs/architecture.md's table in step.
_BELOW_CALL = {"_base", "_transport", "emulator", "providers"}
ALLOWED: dict[str, set[str]] = {
    "_version": set(),
    "_base": set(),
    "_transport": {"_base"},
    "emulator": {"_base", "_transport"},
    "providers": {"_base", "_transport", "emulator"},
    "_pipeline": _BELOW_CALL,
    "_policy": _BELOW_CALL | {"_pipeline"},
    "_spend": _BELOW_CALL | {"_pipeline"},
    "_routing": _BELOW_CALL | {"_pipeline", "_policy", "_spend"},
    "_batching": _BELOW_CALL | {"_pipeline", "_policy", "_spend", "_routing"},
    "_client": _BELOW_CALL | {"_pipeline", "_policy", "_spend", "_routing", "_batching"},
}
_ENTRY = set(ALLOWED) - {"_version"}
ALLOWED["flux_sdk"] = _ENTRY  # the public namespace: flux_sdk/__init__.py
ALLOWED["ray"] = _ENTRY | {"flux_sdk"}
ALLOWED["cli"] = _ENTRY | {"flux_sdk"}
ALLOWED["__main__"] = {"cli"}


def modules() -> dict[str, tuple[Path, bool]]:
    """Dotted name -> (file, is a package), for every module of src/flux_sdk."""
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        package = parts[-1] == "__init__"
        if package:
            parts.pop()
        found[".".join(parts)] = (path, package)
    return found


def imports() -> dict[str, set[str]]:
    """Module -> the flux_sdk modules it imports, anywhere in its file."""
    mods = modules()

    def owner(name: str) -> str:
        while name not in mods:
            name = name.rpartition(".")[0]
        return name

    graph: dict[str, set[str]] = {}
    for name, (path, package) in mods.items():
        here = name if package else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets |= {a.name for a in node.names if a.name.startswith("flux_sdk")}
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = here.split(".")[: len(here.split(".")) - node.level + 1]
                    source = ".".join([*base, node.module] if node.module else base)
                else:
                    source = node.module or ""
                if not source.startswith("flux_sdk"):
                    continue
                for alias in node.names:  # `from pkg import module` imports the module
                    sub = f"{source}.{alias.name}"
                    targets.add(sub if sub in mods else source)
        graph[name] = {owner(t) for t in targets} - {name}
    return graph


def part(module: str) -> str:
    """The layer a module belongs to: the name under flux_sdk (``flux_sdk`` for itself)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "flux_sdk"


def test_every_part_is_in_the_table() -> None:
    unknown = sorted({part(m) for m in modules()} - set(ALLOWED))
    assert not unknown, (
        f"{unknown} sit directly in src/flux_sdk but are not in the layer table: move each "
        "into the subpackage of its layer (see docs/architecture.md), or add an entry module "
        "to ALLOWED and to the page's table"
    )


def test_each_layer_imports_only_the_layers_it_may() -> None:
    wrong = []
    for module, targets in sorted(imports().items()):
        for target in sorted(targets):
            a, b = part(module), part(target)
            if a != b and b != "_version" and b not in ALLOWED.get(a, set()):
                wrong.append(f"{module} imports {target} ({a} may not import {b})")
    assert not wrong, "\n".join(wrong)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_cycles_are_found() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_even_type_only() -> None:
    graph = imports()
    found = cycles(graph)
    lines = [
        " <-> ".join(c) + ": " + "; ".join(f"{m} -> {sorted(graph[m] & set(c))}" for m in c)
        for c in found
    ]
    assert not found, "import cycles (the lower module declares a Protocol):\n" + "\n".join(lines)


def test_the_architecture_page_shows_this_table() -> None:
    text = (ROOT / "docs" / "architecture.md").read_text()
    table = {}
    for row in re.findall(r"^\| `([\w.]+)` \|[^|]*\| ([^|]*) \|$", text, re.M):
        name, may = row
        table[name] = set(re.findall(r"`([\w.]+)`", may))
    assert table == {k: v for k, v in ALLOWED.items() if k != "__main__"}
