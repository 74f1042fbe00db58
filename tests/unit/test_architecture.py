"""The structure holds: no import cycle between modules or packages, and no oversized module.

Imports are read with ``ast``, function-local ones included (they are runtime dependencies too);
imports under ``if TYPE_CHECKING:`` are not (they exist only for the type checker). A package's
``__init__`` is a facade over its own modules and is not a source of edges.
"""

from __future__ import annotations

import ast
from pathlib import Path

import celeriac

SRC = Path(celeriac.__file__).parent
ROOT = "celeriac"

#: modules allowed over MAX_LINES, each with the reason written at its top (checked below)
MAX_LINES = 500

#: known cycles, each with the work that removes it; a new cycle fails the test
ALLOWED_MODULE_CYCLES: dict[frozenset[str], str] = {}
#: known package cycles, each with its reason
ALLOWED_PACKAGE_CYCLES: dict[frozenset[str], str] = {
    frozenset({"celeriac.cli", "celeriac._migrate"}): (
        "check-celery's oracle reads the CLI's click group to know which commands and flags exist"
    ),
}

#: long modules whose split is under way elsewhere (remove the entry when it lands)
SPLIT_PENDING: dict[str, str] = {}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(path: Path) -> set[str]:
    """The celeriac modules ``path`` imports at run time."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for other in child.orelse:
                    visit(other)
                continue
            if isinstance(child, ast.Import):
                found.update(a.name for a in child.names if a.name.split(".")[0] == ROOT)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")
                    base = base[: len(base) - (child.level - 1)]
                    target = ".".join(base + ([child.module] if child.module else []))
                else:
                    target = child.module or ""
                if target.split(".")[0] != ROOT:
                    continue
                for alias in child.names:  # `from . import scripts` names a module
                    candidate = f"{target}.{alias.name}"
                    found.add(candidate if _exists(candidate) else target)
            visit(child)

    visit(ast.parse(path.read_text("utf-8")))
    return {m for m in found if _exists(m)}


def _exists(module: str) -> bool:
    rel = Path(*module.split(".")[1:])
    return (SRC / rel).with_suffix(".py").is_file() or (SRC / rel / "__init__.py").is_file()


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in sorted(SRC.rglob("*.py")):
        if path.name == "__init__.py":
            continue
        graph[_module_name(path)] = _imports(path) - {_module_name(path)}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[frozenset[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(frozenset(component))

    for v in list(graph):
        if v not in index:
            connect(v)
    return out


def _package(module: str) -> str:
    parts = module.split(".")
    # subpackages are one node each; top-level modules (the middle layer) are nodes of their own
    return ".".join(parts[:2])


def test_no_import_cycle_between_modules() -> None:
    cycles = [sorted(c) for c in _cycles(_graph()) if c not in ALLOWED_MODULE_CYCLES]
    assert cycles == []


def test_no_import_cycle_between_packages() -> None:
    packages: dict[str, set[str]] = {}
    for module, targets in _graph().items():
        allowed = {m for c in ALLOWED_MODULE_CYCLES for m in c}
        if module in allowed:
            targets = targets - allowed
        packages.setdefault(_package(module), set()).update(_package(t) for t in targets)
    for source in packages:
        packages[source].discard(source)
    assert [sorted(c) for c in _cycles(packages) if c not in ALLOWED_PACKAGE_CYCLES] == []


def test_the_layers_point_down() -> None:
    graph = _graph()

    def reaches(source: str, prefix: str) -> list[str]:
        seen, todo = set(), [source]
        while todo:
            for w in graph.get(todo.pop(), ()):
                if w not in seen:
                    seen.add(w)
                    todo.append(w)
        return sorted(m for m in seen if m.startswith(prefix))

    # sending needs no worker code; brokers and result stores do not import each other
    for module in (
        "celeriac.app",
        "celeriac.task",
        "celeriac.result",
        "celeriac.execution",
        "celeriac.eager",
    ):
        assert reaches(module, "celeriac.worker") == [], module
    for module in graph:
        if module.startswith("celeriac.broker."):
            assert reaches(module, "celeriac.results") == [], module
        if module.startswith("celeriac.results."):
            assert reaches(module, "celeriac.broker") == [], module
    assert reaches("celeriac.codec", "celeriac.results") == []


def test_no_module_is_over_the_size_limit_without_a_reason() -> None:
    over = []
    for path in sorted(SRC.rglob("*.py")):
        lines = path.read_text("utf-8").splitlines()
        if str(path.relative_to(SRC)) in SPLIT_PENDING:
            continue
        if len(lines) > MAX_LINES and not any("Why this module is long:" in line for line in lines[:40]):
            over.append(f"{path.relative_to(SRC)} ({len(lines)} lines)")
    assert over == [], f"over {MAX_LINES} lines without 'Why this module is long:' near the top"
