"""Imports point one way, framework <- modules <- tools, with no circles (DESIGN.md, issue 18).

An AST scan of the checkout (not an import: nothing runs), so a circle hidden inside a function body
counts too; only imports under ``if TYPE_CHECKING:`` are exempt, since they never execute.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# the checkout's folders and the names they install under (setup.cfg package_dir)
PACKAGES = {"framework": "hltrun.framework", "modules": "hltrun.modules", "tools": "hltrun.tools",
            "hltrun": "hltrun"}

# Cycles other branches remove; the integrator deletes an entry once that branch is merged.
# Each entry is the set of modules forming one strongly connected component.
KNOWN_CYCLES: dict[str, frozenset[str]] = {
}


def module_files() -> dict[str, Path]:
    """Every Python file of the installed packages, by its dotted ``hltrun...`` name."""
    out: dict[str, Path] = {}
    for folder, dotted in PACKAGES.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join([dotted, *parts])] = path
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST):
    """Import nodes anywhere (module level and inside functions), skipping ``if TYPE_CHECKING:`` bodies."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        children = list(ast.iter_child_nodes(node))
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            children = node.orelse
        stack.extend(children)


def import_graph() -> dict[str, set[str]]:
    """module -> the hltrun modules it imports (``from pkg import sub`` counts as importing ``pkg.sub``)."""
    files = module_files()
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        is_pkg = path.name == "__init__.py"
        here = name if is_pkg else name.rpartition(".")[0]
        edges: set[str] = set()
        for node in _imports(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                if node.level:
                    base = here.split(".")
                    base = base[: len(base) - (node.level - 1)]
                    mod = ".".join(base + ([node.module] if node.module else []))
                else:
                    mod = node.module or ""
                targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in files else mod for a in node.names]
            for target in targets:
                while target and target not in files and "." in target:  # import a.b.c of a non-module c
                    target = target.rpartition(".")[0]
                if target in files and target != name:
                    edges.add(target)
        graph[name] = edges
    return graph


def cycles(graph: dict[str, set[str]], prefix: str) -> list[frozenset[str]]:
    """Strongly connected components (Tarjan) of more than one module among names under ``prefix``."""
    nodes = [n for n in graph if n == prefix or n.startswith(prefix + ".")]
    sub = {n: [m for m in graph[n] if m in set(nodes)] for n in nodes}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[frozenset[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sub[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(frozenset(comp))

    for n in nodes:
        if n not in index:
            visit(n)
    return out


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph()


def _offenders(graph: dict[str, set[str]], importer: str, forbidden: tuple[str, ...]) -> list[str]:
    return sorted(f"{a} imports {b}" for a, bs in graph.items() if a.startswith(importer + ".") or a == importer
                  for b in bs if any(b == f or b.startswith(f + ".") for f in forbidden))


def test_framework_imports_no_plugin_tool_or_public_api(graph):
    assert _offenders(graph, "hltrun.framework", ("hltrun.modules", "hltrun.tools")) == []
    assert [f"{a} imports hltrun" for a, bs in graph.items() if a.startswith("hltrun.framework") and "hltrun" in bs] == []


def test_reports_import_no_service(graph):
    """Reports render results (DESIGN.md: they import result types only): what they need of a service comes
    in its result (e.g. Timing's ``rows.per_stream``) or from a module both import (framework/binning.py)."""
    assert _offenders(graph, "hltrun.framework.report", ("hltrun.framework.services",)) == []


def test_modules_import_no_tool(graph):
    assert _offenders(graph, "hltrun.modules", ("hltrun.tools",)) == []


@pytest.mark.parametrize("layer", ["hltrun.framework", "hltrun.modules", "hltrun.tools"])
def test_no_import_cycles(graph, layer):
    found = [sorted(c) for c in cycles(graph, layer) if c not in KNOWN_CYCLES.values()]
    assert found == [], f"import cycles in {layer}: {found}"


def test_known_cycles_are_still_there(graph):
    """An allow-listed cycle that is gone must leave the list (so the list cannot hide a new one)."""
    present = {c for layer in ("hltrun.framework", "hltrun.modules", "hltrun.tools") for c in cycles(graph, layer)}
    assert [name for name, c in KNOWN_CYCLES.items() if c not in present] == []


def test_scanner_sees_function_level_imports_and_skips_type_checking(tmp_path):
    """The scanner itself: a circle through a function body is found, one under TYPE_CHECKING is not."""
    g = {"p.a": {"p.b"}, "p.b": {"p.a"}, "p.c": set()}
    assert cycles(g, "p") == [frozenset({"p.a", "p.b"})]
    src = ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .x import y\n"
           "def f():\n    from .z import w\n")
    names = [n.module for n in _imports(ast.parse(src))]
    assert "z" in names and "x" not in names
