"""Fails when gradkit's module graph has an import cycle; prints the largest one.

grimp builds the graph of every module of the package, counting imports inside
functions (a lazy import is still a dependency) and imports of a package's
__init__. A layers contract (.importlinter) cannot see a cycle inside one layer;
this script can: any strongly connected component of more than one module fails it.

    python ci/check_import_cycles.py [package]    # default: gradkit
"""
from __future__ import annotations

import sys

import grimp


def strongly_connected_components(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative (a deep graph never hits the recursion limit)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        work = [(root, iter(sorted(graph[root])))]
        while work:
            node, successors = work[-1]
            for succ in successors:
                if succ not in index:
                    index[succ] = low[succ] = len(index)
                    stack.append(succ)
                    on_stack.add(succ)
                    work.append((succ, iter(sorted(graph[succ]))))
                    break
                if succ in on_stack:
                    low[node] = min(low[node], index[succ])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    components.append(sorted(component))
    return components


def main(package: str = "gradkit") -> int:
    graph = grimp.build_graph(package, include_external_packages=False, cache_dir=None)
    edges = {m: set(graph.find_modules_directly_imported_by(m)) for m in graph.modules}
    cycles = sorted((c for c in strongly_connected_components(edges) if len(c) > 1),
                    key=len, reverse=True)
    if not cycles:
        print(f"{package}: {len(edges)} modules, no import cycle")
        return 0
    largest = cycles[0]
    print(f"{package}: {len(cycles)} import cycle(s) among {len(edges)} modules; the largest "
          f"strongly connected component has {len(largest)} modules:", file=sys.stderr)
    members = set(largest)
    for module in largest:
        inside = sorted(edges[module] & members)
        print(f"  {module} -> {', '.join(inside)}", file=sys.stderr)
    for other in cycles[1:]:
        print(f"  another cycle: {', '.join(other)}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
