"""The package's layers: a module imports only from layers below its own, and nothing imports in a circle.

``LAYERS`` is the one place the layering is written down, lowest first. Modules in one layer
do not import each other. Every import counts, including those inside functions (the usual
way to hide an upward dependency); only ``if TYPE_CHECKING:`` blocks are left out, since they
never run. A new module must be placed in a layer, or this test fails.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import django_perspective

PACKAGE = "django_perspective"
ROOT = Path(django_perspective.__file__).resolve().parent

LAYERS: tuple[tuple[str, ...], ...] = (
    # Errors about data, then Arrow made loadable: below everything that loads data.
    ("errors",),
    ("arrow",),
    # Foundations: settings, row encoding, the wire format, file and SQL readers, small helpers.
    ("conf", "data", "protocol", "backpressure", "finders", "client", "files", "sql", "presence", "expressions", "scheduler", "fields", "principals", "memory", "websocket"),
    # The server launches with a direct path for binary frames (daphne, uvicorn).
    ("serve", "uvicorn_ws"),
    # The request schema (every request type, field by field), then what the engine holds.
    ("schema",),
    ("catalog",),
    # The engine, and the rules a frame is checked against.
    ("engine", "access", "tokens", "guard", "proxies"),
    # Database tables: declared relations read through SQL, never copied into the engine.
    ("databases",),
    # Keeping processes' copies of declared tables identical; knows nothing of who declares them.
    ("replication",),
    # The Python API for hosting and changing tables.
    ("api",),
    # Tables declared in code, then live model tables (declared tables that follow a queryset).
    ("tables",),
    ("live",),
    # The admin's registry: where a row's data comes from, the model, hosting rows.
    ("sources",),
    ("models", "migrations"),
    ("publishing", "consumers", "health", "checks"),
    # The consumer for database tables, at its own path.
    ("virtual",),
    ("admin", "management", "routing"),
    ("browser",),
    ("views", "templatetags"),
    ("urls",),
    # What a project touches: the app config that wires the hooks, test helpers, the facade.
    ("apps", "testing", "__init__"),
)


@dataclass(frozen=True)
class Import:
    source: str  # the importing module, dotted
    target: str  # the imported module, dotted
    line: int


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk(node: ast.AST):
    """Every node below ``node``, at any depth, skipping ``if TYPE_CHECKING:`` bodies."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child):
            for other in child.orelse:
                yield other
                yield from _walk(other)
            continue
        yield child
        yield from _walk(child)


def _is_module(name: str) -> bool:
    path = ROOT.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def imports_of(source: str, code: str, is_package: bool = False) -> list[Import]:
    """The package modules ``code`` (module ``source``) imports, wherever the import statement is."""
    found: list[Import] = []
    package = source if is_package else source.rpartition(".")[0]
    for node in _walk(ast.parse(code)):
        if isinstance(node, ast.Import):
            found += [Import(source, a.name, node.lineno) for a in node.names if a.name.split(".")[0] == PACKAGE]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module.split(".")[0] != PACKAGE:
                continue
            for alias in node.names:
                # ``from . import conf`` imports the module conf; ``from .engine import Engine`` engine.
                submodule = f"{module}.{alias.name}"
                found.append(Import(source, submodule if _is_module(submodule) else module, node.lineno))
    return found


def package_imports() -> list[Import]:
    found: list[Import] = []
    for path in sorted(ROOT.rglob("*.py")):
        found += imports_of(_module_name(path), path.read_text(), path.name == "__init__.py")
    return found


def unit(module: str) -> str:
    """The layered unit a module belongs to: ``replication.stream`` -> ``replication``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def layer_of() -> dict[str, int]:
    return {name: level for level, names in enumerate(LAYERS) for name in names}


def upward(imports: list[Import]) -> list[str]:
    """Imports from a module's own layer or one above it, as readable lines."""
    layers = layer_of()
    bad = []
    for imp in imports:
        source, target = unit(imp.source), unit(imp.target)
        if source != target and layers[target] >= layers[source]:
            bad.append(f"{imp.source}:{imp.line} imports {imp.target} (layer {layers[target]} >= {layers[source]})")
    return bad


def cycles(imports: list[Import]) -> list[list[str]]:
    graph: dict[str, set[str]] = {}
    for imp in imports:
        if imp.source != imp.target:
            graph.setdefault(imp.source, set()).add(imp.target)
    found: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                found.append(path[path.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return found


def test_every_module_has_exactly_one_layer():
    names = [name for names in LAYERS for name in names]
    assert len(names) == len(set(names)), "a name appears in two layers"
    units = {unit(_module_name(path)) for path in ROOT.rglob("*.py")}
    assert units - set(names) == set(), "modules without a layer: add them to LAYERS"
    assert set(names) - units == set(), "LAYERS names modules that do not exist"


def test_no_module_imports_its_own_layer_or_a_higher_one():
    assert upward(package_imports()) == []


def test_nothing_imports_in_a_circle():
    assert cycles(package_imports()) == []


def test_the_check_sees_imports_hidden_in_functions_but_not_type_hints():
    code = (
        "from typing import TYPE_CHECKING\n"
        "from . import conf\n"
        "if TYPE_CHECKING:\n"
        "    from .api import HostedTable\n"
        "def start():\n"
        "    if True:\n"
        "        from .tables import declared\n"
        "class Engine:\n"
        "    def open(self):\n"
        "        import django_perspective.publishing\n"
    )
    found = imports_of("django_perspective.engine", code)
    assert [(i.target, i.line) for i in found] == [
        ("django_perspective.conf", 2),
        ("django_perspective.tables", 7),
        ("django_perspective.publishing", 10),
    ]
    layers = layer_of()
    engine, tables, publishing = layers["engine"], layers["tables"], layers["publishing"]
    assert upward(found) == [
        f"django_perspective.engine:7 imports django_perspective.tables (layer {tables} >= {engine})",
        f"django_perspective.engine:10 imports django_perspective.publishing (layer {publishing} >= {engine})",
    ]
    loop = [Import("a", "b", 1), Import("b", "c", 1), Import("c", "a", 1)]
    assert cycles(loop) == [["a", "b", "c", "a"]]
