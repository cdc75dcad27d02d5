"""docs/cli.md against the parser: every option of every command is documented, and the
page documents nothing the command lacks. Also: the cli package has no import cycle."""

from __future__ import annotations

import argparse
import ast
import re
from pathlib import Path

import flux_sdk.cli
from flux_sdk.cli._parser import build_parser
from flux_sdk.emulator import Fault

PAGE = Path(__file__).parent.parent / "docs" / "cli.md"
OPTION = re.compile(r"(?<![\w-])--[a-z][a-z0-9]*(?:-[a-z0-9]+)*")


def commands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    (action,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def options(parser: argparse.ArgumentParser) -> set[str]:
    return {s for a in parser._actions for s in a.option_strings if s.startswith("--")}


def sections() -> dict[str, str]:
    """The page's text by ``## `` heading; the part before the first is under ''."""
    parts = re.split(r"^## (.*)$", PAGE.read_text(), flags=re.MULTILINE)
    found = {"": parts[0]}
    found.update(zip(parts[1::2], parts[2::2], strict=True))
    return found


def test_each_command_section_documents_exactly_its_options() -> None:
    page = sections()
    for name, parser in commands().items():
        text = page[f"`flux-sdk {name}`"]
        documented = set(OPTION.findall(text)) - {"--help"}
        assert documented == options(parser) - {"--help"}, name
        for action in parser._actions:
            if not action.option_strings:  # a positional argument: PROMPT, PROMPTS
                assert f"`{action.metavar or action.dest.upper()}`" in text, name
            for choice in action.choices or ():
                assert str(choice) in text, f"{name} {action.option_strings}: {choice}"


def test_every_fault_kind_is_documented() -> None:
    text = sections()["`flux-sdk emulator`"]
    for fault in Fault:
        assert f"`{fault.value}`" in text, fault


def test_the_rest_of_the_page_names_only_real_options() -> None:
    known = options(build_parser()).union(*(options(p) for p in commands().values()))
    names = {f"`flux-sdk {name}`" for name in commands()}
    for title, text in sections().items():
        if title not in names:
            assert set(OPTION.findall(text)) <= known, title


def test_the_cli_package_has_no_import_cycle() -> None:
    """Imports between the package's modules, at any depth in a module, form no cycle,
    and no module imports the package itself (its __init__ imports them)."""
    package = Path(flux_sdk.cli.__file__).parent
    graph: dict[str, set[str]] = {}
    for path in package.glob("*.py"):
        name = path.stem
        graph[name] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                module = node.module or ""
                if node.level == 1 and module:
                    graph[name].add(module)
                absolute = node.level == 0 and module.startswith("flux_sdk.cli")
                assert not (node.level == 1 and not module), f"{name} imports the package"
                assert not absolute, f"{name}: import from the cli package relatively"
            elif isinstance(node, ast.Import):
                assert not any(a.name.startswith("flux_sdk.cli") for a in node.names), name
    state: dict[str, str] = {}

    def visit(module: str, path: tuple[str, ...]) -> None:
        if state.get(module) == "done":
            return
        assert state.get(module) != "open", f"import cycle: {' -> '.join((*path, module))}"
        state[module] = "open"
        for target in graph.get(module, ()):
            visit(target, (*path, module))
        state[module] = "done"

    for module in graph:
        visit(module, ())
    assert {"__init__", "_parser", "_batch", "_generate", "_progress"} <= set(graph)
