"""The packages' modules import one way: no circle among tasks/ and flows/, none in devstack/.

Every import counts, also one inside a function or under TYPE_CHECKING: a circle that only
type hints close still ties the modules together, and a late import that hides one is how the
circles grew in the first place.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.helpers import ROOT


def _module_of(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, known: set[str]) -> set[str]:
    """The modules of `known` that `path` imports, by name (`from a import b` counts as
    `a.b` when that is a module, else as `a`)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                name = f"{node.module}.{alias.name}"
                found.add(name if name in known else node.module)
    return found & known


def import_graph(*folders: str) -> dict[str, set[str]]:
    files = [f for folder in folders for f in sorted((ROOT / folder).rglob("*.py"))]
    known = {_module_of(f) for f in files}
    return {_module_of(f): _imports(f, known) - {_module_of(f)} for f in files}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for after in sorted(graph[node]):
            if after not in index:
                visit(after)
                low[node] = min(low[node], low[after])
            elif after in on_stack:
                low[node] = min(low[node], index[after])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _described(graph: dict[str, set[str]], group: list[str]) -> str:
    members = set(group)
    arrows = [f"{a} -> {b}" for a in group for b in sorted(graph[a] & members)]
    return f"{len(group)} modules: " + "; ".join(arrows)


def test_the_finder_names_a_circle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert circles(graph) == [["a", "b", "c"]]
    assert circles({"a": {"b"}, "b": set()}) == []


def test_tasks_and_flows_import_one_way():
    graph = import_graph("tasks", "flows")
    assert len(graph) > 40, sorted(graph)  # the walk found the packages' modules
    found = circles(graph)
    assert not found, "\n".join(_described(graph, group) for group in found)


def test_devstack_imports_one_way():
    graph = import_graph("devstack")
    assert "devstack.stack" in graph, sorted(graph)
    found = circles(graph)
    assert not found, "\n".join(_described(graph, group) for group in found)
