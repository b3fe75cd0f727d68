"""Count the import cycles between neuronperf's modules and fail if there is one.

Every import counts, lazy ones inside functions included (a lazy import is still a
dependency); imports under ``if TYPE_CHECKING:`` do not. A cycle is a strongly connected group of
two or more modules (a package's ``__init__`` is a module like any other). import-linter's
contracts (pyproject.toml) check the layers and cycles between sibling packages; this checks
every module against every other. Run by ``nox -s lint``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import grimp

# The checkout's package, whether or not one is installed.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def cycles(package: str = "neuronperf") -> list[list[str]]:
    """Each import cycle as the sorted list of its modules (Tarjan's algorithm)."""
    graph = grimp.build_graph(package, include_external_packages=False, exclude_type_checking_imports=True)
    edges = {m: sorted(graph.find_modules_directly_imported_by(m)) for m in graph.modules}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(start: str) -> None:
        # Iterative, so that a deep import chain cannot hit the recursion limit.
        work = [(start, iter(edges[start]))]
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
                    work.append((child, iter(edges[child])))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
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

    for module in sorted(edges):
        if module not in index:
            visit(module)
    return found


def main() -> int:
    found = cycles()
    for group in found:
        print(f"import cycle of {len(group)} modules: {' -> '.join(group)}", file=sys.stderr)
    print(f"{len(found)} import cycles")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
