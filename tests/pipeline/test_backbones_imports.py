"""No import cycle inside ``pipeline.backbones``: the modules form layers (encoder, weights,
catalogue, download, the backbone modules, the registry, the package) with nothing importing
back up. Imports inside functions count too, since they are the way cycles hide."""

from __future__ import annotations

import ast
from pathlib import Path

import pipeline.backbones

PACKAGE = "pipeline.backbones"
FOLDER = Path(pipeline.backbones.__file__).parent


def _module(path: Path) -> str:
    return PACKAGE if path.stem == "__init__" else f"{PACKAGE}.{path.stem}"


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The package's modules that ``path`` imports, anywhere in the file."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            # ``from pipeline.backbones import davenet`` imports the submodule.
            submodules = [f"{node.module}.{alias.name}" for alias in node.names]
            names = [n for n in submodules if n in modules] or [node.module]
        else:
            continue
        found |= {n for n in names if n in modules}
    return found - {_module(path)}


def _graph() -> dict[str, set[str]]:
    files = sorted(FOLDER.glob("*.py"))
    modules = {_module(p) for p in files}
    return {_module(p): _imports(p, modules) for p in files}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of ``graph`` as a path, or None (depth-first search)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_no_import_cycle_in_the_backbones_package() -> None:
    graph = _graph()
    assert f"{PACKAGE}.registry" in graph[PACKAGE]
    assert f"{PACKAGE}.davenet" in graph[f"{PACKAGE}.registry"]
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])
    # The modules below the registry never reach it (nor the package's __init__).
    for name, deps in graph.items():
        if name not in (PACKAGE, f"{PACKAGE}.registry"):
            assert not deps & {PACKAGE, f"{PACKAGE}.registry"}, name


def test_the_cycle_finder_finds_one() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None
