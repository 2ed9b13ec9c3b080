"""The import graph of the project's packages has no cycles, and engines/ is sub-packages.

Every import between the project's own modules counts, wherever it stands (top of the
file, inside a function, under TYPE_CHECKING): a cycle through a lazy import is still a
cycle in the design.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("engines", "avatars", "server", "trt_build", "vn3d")


def project_modules() -> dict[str, Path]:
    mods = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            mods[name] = path
    return mods


def imports_of(path: Path, mods: dict[str, Path]) -> set[str]:
    """The project modules ``path`` imports (``from a.b import c`` counts a.b.c when that is
    a module, else a.b)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{a.name}" for a in node.names]
            names = [n if n in mods else node.module for n in names]
        found.update(n for n in names if n in mods)
    return found


def import_graph() -> dict[str, set[str]]:
    mods = project_modules()
    return {name: imports_of(path, mods) - {name} for name, path in mods.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a list of modules (first == last), or None."""
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_cycles() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_every_project_import_names_something_that_exists() -> None:
    """Packages, scripts and tests import only names their project modules define (a moved
    function breaks the benchmarks here, not on a user's machine)."""
    import importlib

    mods = project_modules()
    missing = []
    files = [*mods.values(), *(ROOT / "scripts").glob("*.py"), *(ROOT / "tests").glob("*.py")]
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.ImportFrom) and node.module in mods and node.level == 0):
                continue
            module = importlib.import_module(node.module)
            for alias in node.names:
                name = f"{node.module}.{alias.name}"
                if not hasattr(module, alias.name) and name not in mods:
                    missing.append(f"{path.relative_to(ROOT)}: {name}")
    assert missing == []


def test_engines_has_no_loose_modules() -> None:
    loose = [p.name for p in (ROOT / "engines").glob("*.py") if p.name != "__init__.py"]
    assert loose == [], f"engines/ holds only sub-packages: move {loose} into one"
