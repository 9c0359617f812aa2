"""The package's shape: no import cycle, dependencies pointing one way (#15).

Imports are read from the source (module level and inside functions; ``if
TYPE_CHECKING:`` blocks excluded, since they never run).
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "ihuyi_async"

#: Modules that do no I/O and import neither a transport nor the client.
PURE = (
    "ihuyi_async._codes",
    "ihuyi_async._config",
    "ihuyi_async._exceptions",
    "ihuyi_async._forms",
    "ihuyi_async._models",
    "ihuyi_async._parsing",
    "ihuyi_async._redact",
    "ihuyi_async._signing",
    "ihuyi_async._validation",
)
WIRE = ("ihuyi_async._transport", "ihuyi_async._aiohttp", "ihuyi_async._backends", "ihuyi_async._client")


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


class _Imports(ast.NodeVisitor):
    def __init__(self) -> None:
        self.nodes: list[ast.Import | ast.ImportFrom] = []

    def visit_If(self, node: ast.If) -> None:
        test = node.test
        if (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
            isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
        ):
            for child in node.orelse:
                self.visit(child)
            return
        self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        self.nodes.append(node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        self.nodes.append(node)


def graph() -> dict[str, set[str]]:
    modules = _modules()
    edges: dict[str, set[str]] = {}
    for name, path in modules.items():
        visitor = _Imports()
        visitor.visit(ast.parse(path.read_text(encoding="utf-8")))
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        deps: set[str] = set()
        for node in visitor.nodes:
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                subs = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in modules]
                # "from pkg import submodule" depends on the submodule only
                targets = subs if subs and len(subs) == len(node.names) else [target, *subs]
            deps.update(t for t in targets if t in modules and t != name)
        edges[name] = deps
    return edges


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in edges:
        if v not in index:
            visit(v)
    return found


def _reaches(edges: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        for dep in edges[todo.pop()]:
            if dep not in seen:
                seen.add(dep)
                todo.append(dep)
    return seen


def test_no_import_cycle() -> None:
    assert _cycles(graph()) == []


def test_pure_modules_reach_no_transport_or_client() -> None:
    edges = graph()
    for module in PURE:
        bad = _reaches(edges, module) & set(WIRE)
        assert not bad, (module, sorted(bad))


def _is_tooling(module: str) -> bool:
    return (
        module in ("ihuyi_async.testing", "ihuyi_async._cli", "ihuyi_async._demo", "ihuyi_async.__main__")
        or module.startswith(("ihuyi_async.testing.", "ihuyi_async._cli."))
    )


def test_the_library_reaches_neither_testing_nor_cli() -> None:
    edges = graph()
    # The one sanctioned edge, until the next release: the deprecated push-builder shim.
    edges["ihuyi_async.pushes"].discard("ihuyi_async.testing")
    for module in (m for m in edges if not _is_tooling(m)):
        bad = sorted(m for m in _reaches(edges, module) if _is_tooling(m))
        assert not bad, (module, bad)
