"""The package's import graph: no cycles between modules or between subpackages, and
nanosim.core imports nothing of nanosim but itself and nanosim.config.

Every ``import`` / ``from ... import`` statement counts, function-level (lazy) ones included,
read from the source with ``ast`` (nothing is imported). ``from pkg import name`` is an edge to
``pkg.name`` when that is a module, else to ``pkg``. Subpackages are ``nanosim.X`` for each
folder X; the top-level modules (``nanosim.cli``, ``nanosim.output``, ...) are their own units.
"""
from __future__ import annotations

import ast
from pathlib import Path

import nanosim

ROOT = Path(nanosim.__file__).parent
# What nanosim.core may import besides itself: the frozen configs only.
CORE_MAY_IMPORT = {"nanosim.config"}


def _modules() -> dict[str, Path]:
    mods = {}
    for path in ROOT.rglob("*.py"):
        parts = ("nanosim",) + path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = path
    return mods


def import_graph() -> dict[str, set[str]]:
    """module -> nanosim modules it imports (anywhere in its body)."""
    mods = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        is_pkg = path.name == "__init__.py"
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = name.split(".") if is_pkg else name.split(".")[:-1]
                    base = base[:len(base) - node.level + 1]
                    src = ".".join(base + ([node.module] if node.module else []))
                else:
                    src = node.module or ""
                targets = [f"{src}.{a.name}" if f"{src}.{a.name}" in mods else src
                           for a in node.names]
            else:
                continue
            for t in targets:
                while t and t not in mods:      # `import nanosim.x.y` of a package attribute
                    t = t.rpartition(".")[0]
                if t.startswith("nanosim") and t != name and t != "nanosim":
                    edges.add(t)
        graph[name] = edges
    return graph


def unit(module: str) -> str:
    """The subpackage a module belongs to (``nanosim.gpu.kernels.pdl`` -> ``nanosim.gpu``)."""
    parts = module.split(".")
    pkg = ".".join(parts[:2])
    return pkg


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as [a, b, ..., a], or None (iterative DFS, colours)."""
    colour = dict.fromkeys(graph, 0)
    for start in sorted(graph):
        if colour[start]:
            continue
        stack = [(start, iter(sorted(graph[start])))]
        path = [start]
        colour[start] = 1
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                colour[node] = 2
                stack.pop()
                path.pop()
            elif colour.get(nxt, 2) == 1:
                return path[path.index(nxt):] + [nxt]
            elif colour.get(nxt) == 0:
                colour[nxt] = 1
                path.append(nxt)
                stack.append((nxt, iter(sorted(graph[nxt]))))
    return None


def package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    pg: dict[str, set[str]] = {}
    for mod, edges in graph.items():
        pg.setdefault(unit(mod), set()).update(unit(e) for e in edges if unit(e) != unit(mod))
    return pg


def test_graph_sees_lazy_and_relative_imports():
    g = import_graph()
    # cli imports its commands inside functions; core/__init__ re-exports its modules.
    assert "nanosim.sim.job" in g["nanosim.cli"]
    assert "nanosim.core.engine" in g["nanosim.core"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_module_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_no_subpackage_import_cycle():
    cycle = find_cycle(package_graph(import_graph()))
    assert cycle is None, "subpackage import cycle: " + " -> ".join(cycle)


def test_core_imports_only_itself_and_config():
    bad = {f"{m} imports {e}" for m, es in import_graph().items() if unit(m) == "nanosim.core"
           for e in es if unit(e) != "nanosim.core" and e not in CORE_MAY_IMPORT}
    assert not bad, sorted(bad)


def test_replay_does_not_import_the_simulator():
    g = import_graph()
    seen, todo = set(), ["nanosim.gpu.replay"]
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo.extend(g[m])
    assert "nanosim.sim.simulator" not in seen
