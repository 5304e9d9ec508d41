"""The package structure: imports flow one way. Every `import` of the project's own modules,
at the top of a file or inside a function, is an edge; there must be no cycle. A package's
`__init__` importing its own children does not count."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.constants import ROOT

PACKAGES = ("optimizer", "api", "cli", "jobs")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The project modules `path` imports anywhere in its body (`from a import b` counts as
    `a.b` when that is a module, else as `a`)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names if alias.name in modules)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                out.add(full if full in modules else node.module)
    return out & modules


def _graph() -> dict[str, set[str]]:
    files = [p for package in PACKAGES for p in (ROOT / package).rglob("*.py")]
    modules = {_module_name(p) for p in files}
    graph = {}
    for path in files:
        name = _module_name(path)
        edges = _imports(path, modules) - {name}
        if path.name == "__init__.py":  # a package handing on its own children
            edges = {m for m in edges if not m.startswith(name + ".")}
        graph[name] = edges
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            if nxt not in state and (found := visit(nxt)) is not None:
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)) is not None:
            return found
    return None


def test_no_import_cycle_among_the_project_modules() -> None:
    cycle = _cycle(_graph())
    assert cycle is None, " -> ".join(cycle or [])


def test_the_cycle_finder_finds_one() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_the_library_never_imports_the_service_the_jobs_or_the_command_line() -> None:
    outside = ("api", "cli", "jobs")
    leaks = {m: sorted(e for e in edges if e.startswith(outside))
             for m, edges in _graph().items() if m.startswith("optimizer")}
    assert not any(leaks.values()), leaks


def test_the_service_never_imports_the_jobs_or_the_command_line() -> None:
    leaks = {m: sorted(e for e in edges if e.startswith(("cli", "jobs")))
             for m, edges in _graph().items() if m.startswith("api")}
    assert not any(leaks.values()), leaks
