"""The package's import graph: no module of cpt_tasks imports, directly or through others, one that imports it
back (imports inside functions count: they are how the light core defers heavy ones)."""

from __future__ import annotations

import graphlib

import grimp


def import_graph(package: str = "cpt_tasks") -> dict[str, set[str]]:
    """module -> the modules of ``package`` it imports anywhere in its source."""
    graph = grimp.build_graph(package, cache_dir=None)
    return {module: graph.find_modules_directly_imported_by(module) for module in graph.modules}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every group of modules that import each other in a circle (strongly connected, Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while (member := stack.pop()) != node:
                group.append(member)
            group.append(node)
            if len(group) > 1 or node in graph.get(node, ()):
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_cpt_tasks_has_no_import_cycle():
    graph = import_graph()
    assert len(graph) > 40 and "cpt_tasks.documents.plan" in graph["cpt_tasks.plan.run"]
    assert cycles(graph) == []
    list(graphlib.TopologicalSorter(graph).static_order())  # raises CycleError on any cycle


def test_the_cycle_check_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"a"}}) == [["a"]] and cycles({"a": {"b"}, "b": set()}) == []
