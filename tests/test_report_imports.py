"""framework/report's modules import each other one way: no circle, at module level or inside functions
(a lazy import hides a circle from Python, not from the reader or the next refactoring)."""

from __future__ import annotations

import ast
from pathlib import Path

import hltrun.framework.report as report

PACKAGE = Path(report.__file__).parent


def _edges() -> dict[str, set[str]]:
    """module -> the package's modules it imports ('__init__' for the package itself), anywhere in it."""
    names = {p.stem for p in PACKAGE.glob("*.py")}
    out: dict[str, set[str]] = {}
    for path in PACKAGE.glob("*.py"):
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                if node.module:  # from .files import x
                    edges.add(node.module.split(".")[0])
                else:  # from . import x: a submodule, or a name of the package's __init__
                    edges |= {a.name if a.name in names else "__init__" for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("hltrun.framework.report"):
                edges.add(node.module.split(".")[3] if node.module.count(".") >= 3 else "__init__")
        out[path.stem] = edges - {path.stem}
    return out


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state and (found := visit(m)):
                return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state and (found := visit(n)):
            return found
    return None


def test_report_modules_form_no_import_circle():
    # kills: html.py importing files.py (or the package) again for atomic_write_text / text_report
    graph = _edges()
    assert {"files", "html", "writing", "text"} <= set(graph)
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])
    assert "files" not in graph["html"] and "__init__" not in graph["html"]


def test_the_circle_finder_finds_a_circle():
    assert _cycle({"files": {"html"}, "html": {"writing", "files"}, "writing": set()}) == ["files", "html", "files"]
