"""The packages' architecture, checked from the source: no import cycle, nothing importing
from a floor above it, and no module over the line budget without a comment saying why.

The import graph is built with ``ast`` from every ``import`` statement of a package, at module
level and inside functions (and under ``if TYPE_CHECKING``: a type is a dependency too);
``from x import y`` where ``x.y`` is a module counts as importing ``x.y``. Only the project's
own modules are nodes.

Floors of ``heads``: the base (every module outside the three folders below: models, losses,
metrics, data, config, runtime, the run log and plots, the typed head files), then
``heads.pretrain`` and ``heads.evaluation`` side by side (neither imports the other), then
``heads.study`` on top. ``pipeline`` never imports ``heads``.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BUDGET = 400
#: The comment that lets a module pass the budget: ``# Over 400 lines: <why>`` among its first
#: lines.
BUDGET_REASON = re.compile(r"^# Over 400 lines: \S.{20,}")

Graph = dict[str, set[str]]


def module_files(package: str) -> dict[str, Path]:
    """Module name -> file, for every ``.py`` file of ``package``."""
    files = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        files[".".join(parts)] = path
    return files


def _imported(node: ast.Import | ast.ImportFrom, module: str, is_package: bool,
              known: set[str]) -> Iterator[str]:
    """The project modules one import statement imports."""
    if isinstance(node, ast.Import):
        for alias in node.names:
            yield _nearest(alias.name, known)
        return
    base = node.module or ""
    if node.level:
        anchor = module.split(".") if is_package else module.split(".")[:-1]
        anchor = anchor[:len(anchor) - node.level + 1]
        base = ".".join([*anchor, *([base] if base else [])])
    for alias in node.names:
        sub = f"{base}.{alias.name}"
        yield sub if sub in known else _nearest(base, known)


def _nearest(name: str, known: set[str]) -> str:
    """``name`` or its closest enclosing module that is one of the project's ("" if none)."""
    parts = name.split(".")
    while parts and ".".join(parts) not in known:
        parts.pop()
    return ".".join(parts)


def import_graph(*packages: str) -> Graph:
    """Module -> the project modules it imports (anywhere in its source)."""
    files = {m: p for package in packages for m, p in module_files(package).items()}
    known = set(files)
    graph: Graph = {}
    for module, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        edges = {target for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))
                 for target in _imported(node, module, path.name == "__init__.py", known)}
        graph[module] = {t for t in edges if t and t != module}
    return graph


def cycles(graph: Graph) -> list[list[str]]:
    """One cycle (a closed path of modules) per strongly connected component of ``graph``
    with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(_closed_path(graph, set(component)))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _closed_path(graph: Graph, component: set[str]) -> list[str]:
    """A shortest cycle through the first module of ``component`` (breadth-first)."""
    start = min(component)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & component):
                if w == start:
                    return [*paths[v], start]
                if w not in paths:
                    paths[w] = [*paths[v], w]
                    nxt.append(w)
        frontier = nxt
    raise AssertionError(f"no cycle through {start}")  # a component always has one


def heads_floor(module: str) -> str:
    """``base``, ``pretrain``, ``evaluation`` or ``study``."""
    for floor in ("pretrain", "evaluation", "study"):
        if module == f"heads.{floor}" or module.startswith(f"heads.{floor}."):
            return floor
    return "base"


#: floor -> the floors it may import from.
ALLOWED = {"base": {"base"}, "pretrain": {"base", "pretrain"},
           "evaluation": {"base", "evaluation"},
           "study": {"base", "pretrain", "evaluation", "study"}}


def floor_violations(graph: Graph) -> list[str]:
    """``a -> b`` for each import of a ``heads`` module from a floor ``a`` may not import."""
    return [f"{a} ({heads_floor(a)}) -> {b} ({heads_floor(b)})"
            for a, targets in sorted(graph.items()) if a.startswith("heads")
            for b in sorted(targets)
            if b.startswith("heads") and heads_floor(b) not in ALLOWED[heads_floor(a)]]


# ---------------------------------------------------------------------------------- the tests

def test_heads_has_no_import_cycle() -> None:
    found = cycles(import_graph("heads"))
    assert not found, "import cycles in heads:\n" + "\n".join(" -> ".join(c) for c in found)


def test_heads_imports_only_from_its_own_floor_or_below() -> None:
    bad = floor_violations(import_graph("heads"))
    assert not bad, "imports from a higher floor (or across pretrain/evaluation):\n" + \
        "\n".join(bad)


def test_pipeline_never_imports_heads() -> None:
    graph = import_graph("pipeline", "heads")
    bad = [f"{a} -> {b}" for a, targets in sorted(graph.items()) if a.startswith("pipeline")
           for b in sorted(targets) if b.startswith("heads")]
    assert not bad, "pipeline imports heads:\n" + "\n".join(bad)


def test_pipeline_has_no_import_cycle() -> None:
    found = cycles(import_graph("pipeline"))
    assert not found, "import cycles in pipeline:\n" + "\n".join(" -> ".join(c) for c in found)


def unexplained_local_imports(package: str, project: tuple[str, ...]) -> list[str]:
    """In-function imports of the project's modules without a comment saying why: on the
    import's line, or on the line above it (or above the block of imports it belongs to)."""
    out = []
    for module, path in module_files(package).items():
        lines = path.read_text(encoding="utf-8").splitlines()
        tree = ast.parse("\n".join(lines))
        for fn in ast.walk(tree):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(fn):
                if not isinstance(node, (ast.Import, ast.ImportFrom)):
                    continue
                names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                         else [node.module or ""])
                if not any(n.split(".")[0] in project for n in names):
                    continue
                above = node.lineno - 2
                while above >= 0 and lines[above].lstrip().startswith(("import ", "from ")):
                    above -= 1
                if "#" not in lines[node.lineno - 1] and not (
                        above >= 0 and lines[above].lstrip().startswith("#")):
                    out.append(f"{module}:{node.lineno}: {lines[node.lineno - 1].strip()}")
    return out


def test_heads_imports_project_modules_inside_functions_only_with_a_reason() -> None:
    bad = unexplained_local_imports("heads", ("heads", "pipeline", "manifests"))
    assert not bad, ("in-function imports without a comment saying why (import at the top of "
                     "the module unless it loads something heavy or optional):\n" + "\n".join(bad))


def over_budget(package: str) -> list[str]:
    """Modules of ``package`` longer than :data:`BUDGET` lines without a comment at their top
    (first 5 lines) saying why."""
    found = (budget_problem(module, path) for module, path in module_files(package).items())
    return [problem for problem in found if problem]


def budget_problem(module: str, path: Path) -> str | None:
    """``"<module>: <n> lines"`` when the module is over :data:`BUDGET` lines without a
    comment at its top (first 5 lines) saying why, else None."""
    lines = path.read_text(encoding="utf-8").splitlines()
    if len(lines) > BUDGET and not any(BUDGET_REASON.match(ln) for ln in lines[:5]):
        return f"{module}: {len(lines)} lines"
    return None


def test_heads_modules_stay_within_the_line_budget() -> None:
    bad = over_budget("heads")
    assert not bad, (f"modules over {BUDGET} lines without a '# Over 400 lines: <why>' comment "
                     "at their top:\n" + "\n".join(bad))


def test_pipeline_modules_and_the_cli_stay_within_the_line_budget() -> None:
    bad = over_budget("pipeline")
    cli = budget_problem("cli", ROOT / "cli.py")
    bad += [cli] if cli is not None else []
    assert not bad, (f"modules over {BUDGET} lines without a '# Over 400 lines: <why>' comment "
                     "at their top:\n" + "\n".join(bad))


# ------------------------------------------------------------------- the checks themselves

def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def test_the_graph_sees_function_level_relative_and_submodule_imports(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": "def f():\n    from pkg.sub import b\n",
        "pkg/sub/__init__.py": "",
        "pkg/sub/b.py": "from .. import c\n",
        "pkg/c.py": "import pkg.a\nimport os\n",
    })
    monkeypatch.setitem(globals(), "ROOT", tmp_path)
    graph = import_graph("pkg")
    assert graph["pkg.a"] == {"pkg.sub.b"}
    assert graph["pkg.sub.b"] == {"pkg.c"}
    assert graph["pkg.c"] == {"pkg.a"}
    assert cycles(graph) == [["pkg.a", "pkg.sub.b", "pkg.c", "pkg.a"]]


def test_floor_violations_name_the_import() -> None:
    graph = {"heads.config": {"heads.pretrain.objectives"},
             "heads.pretrain.train": {"heads.evaluation.run", "heads.models"},
             "heads.study.runner": {"heads.pretrain.train", "heads.evaluation.run"},
             "heads.evaluation.run": {"heads.models"}}
    assert floor_violations(graph) == [
        "heads.config (base) -> heads.pretrain.objectives (pretrain)",
        "heads.pretrain.train (pretrain) -> heads.evaluation.run (evaluation)"]


def test_the_budget_accepts_a_long_module_only_with_its_reason(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    body = "x = 1\n" * (BUDGET + 1)
    _write(tmp_path, {"pkg/__init__.py": "", "pkg/long.py": body,
                      "pkg/why.py": "# Over 400 lines: one table of the paper's numbers\n" + body,
                      "pkg/vague.py": "# Over 400 lines: long\n" + body})
    monkeypatch.setitem(globals(), "ROOT", tmp_path)
    assert over_budget("pkg") == [f"pkg.long: {BUDGET + 1} lines",
                                  f"pkg.vague: {BUDGET + 2} lines"]


def test_an_in_function_import_needs_its_reason(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    _write(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": ("def f():\n    from pkg import b\n\n\n"
                     "def g():\n    # b loads matplotlib\n    import os\n    from pkg import b\n\n\n"
                     "def h():\n    import json\n"),
        "pkg/b.py": "",
    })
    monkeypatch.setitem(globals(), "ROOT", tmp_path)
    assert unexplained_local_imports("pkg", ("pkg",)) == ["pkg.a:2: from pkg import b"]
