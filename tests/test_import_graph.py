"""No import cycle among fulfil's modules (`fulfil_assets`, `resources`), function-level imports included: each
route reads in one direction, and the resources know nothing of the code location."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def import_graph() -> dict[str, set[str]]:
    """Module -> the fulfil modules it imports (anywhere in its body)."""
    modules = {}
    for package in ("fulfil_assets", "resources"):
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            modules[name] = path
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            graph[module] |= {n for n in names if n in modules and n != module}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle_and_resources_stand_alone() -> None:
    graph = import_graph()
    assert len(graph) > 50
    assert cycles(graph) == []
    assert not [
        (m, d) for m, deps in graph.items() if m.startswith("resources") for d in deps if d.startswith("fulfil")
    ]
    assert cycles({"a": {"b"}, "b": {"a"}, "c": set()}) == [["a", "b"]]  # the check itself finds one


def stage_of(module: str) -> str:
    """The layer a module belongs to: its stage folder (`fulfil_assets.push`), or the top-level module itself."""
    return ".".join(module.split(".")[:2])


def test_no_cycle_between_stages() -> None:
    """Stage folders and top-level modules depend in one direction too (shared definitions sit below the stages
    that share them: `reasons`, `frames`, `whistl_formats`, `warehouse_tables`), so a route never turns back."""
    graph: dict[str, set[str]] = {}
    for module, deps in import_graph().items():
        graph.setdefault(stage_of(module), set()).update(stage_of(d) for d in deps if stage_of(d) != stage_of(module))
    assert {"fulfil_assets.push", "fulfil_assets.despatch", "fulfil_assets.stage", "fulfil_assets.ledger"} <= set(graph)
    assert cycles(graph) == []
