"""The import graph of grpc_pool's core, from the source text: every import counts
(module level, inside functions, under ``if TYPE_CHECKING:``).

Run from the repository: ``python -m tests.import_graph [PACKAGE_DIR]`` prints each
module's imports of other core modules, the imports against the layers, and any
cycle (PACKAGE_DIR: another checkout's ``grpc_pool``, e.g. an older commit's).
``tests/test_architecture.py`` asserts the rules on the same graph.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "grpc_pool"
# The CLI and the public add-ons sit above the core; they are not part of the graph.
OUTSIDE = ("grpc_pool.cli", "grpc_pool.prometheus", "grpc_pool.otel", "grpc_pool.testing")

# Layers, lowest first: a module may import its own layer's modules and lower ones.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("grpc_pool._base", "grpc_pool._cli_env"),
    ("grpc_pool._config",),
    ("grpc_pool._contract",),
    ("grpc_pool._channel",),
    ("grpc_pool._workers", "grpc_pool._readers"),
    ("grpc_pool._writer",),
    ("grpc_pool._fork", "grpc_pool._control"),
    ("grpc_pool._pool",),
    ("grpc_pool._constructors", "grpc_pool.__init__", "grpc_pool.__main__"),
)


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts)


def core_modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = module_name(path)
        if name.startswith(OUTSIDE):
            continue
        found[name] = path
    return found


def _resolve(module: str, node: ast.ImportFrom, is_package: bool) -> Iterator[str]:
    """The absolute modules a ``from ... import ...`` names (a name may be a module)."""
    if node.level:
        base = module.split(".")
        base = base[: len(base) - node.level + (1 if is_package else 0)]
        target = ".".join([*base, node.module] if node.module else base)
    else:
        target = node.module or ""
    yield target
    for alias in node.names:
        yield f"{target}.{alias.name}"


def imports_of(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Each core module's imports of other core modules (packages count as their
    ``__init__``: importing ``grpc_pool._writer`` is importing its ``__init__``)."""

    def known(name: str) -> str | None:
        if name in modules:
            return name
        if f"{name}.__init__" in modules:
            return f"{name}.__init__"
        return None

    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        is_package = path.name == "__init__.py"
        own = module[: -len(".__init__")] if is_package else module
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                target, *members = _resolve(own, node, is_package)
                # "from pkg import module" imports the module, not the package's names.
                names = [m for m in members if known(m)] or [target]
            for name in names:
                hit = known(name)
                if hit is not None and hit != module:
                    found.add(hit)
        graph[module] = found
    return graph


def layer_of(module: str) -> int:
    for index, prefixes in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return index
    raise KeyError(f"{module} is in no layer: add it to LAYERS")


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                item = stack.pop()
                on_stack.discard(item)
                group.append(item)
                if item == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _layer_or_none(module: str) -> int | None:
    try:
        return layer_of(module)
    except KeyError:
        return None


def main(argv: list[str]) -> None:
    global PACKAGE
    if argv:
        PACKAGE = Path(argv[0]).resolve()
    graph = imports_of(core_modules())
    short = lambda m: m.removeprefix("grpc_pool.")  # noqa: E731
    layers = {m: _layer_or_none(m) for m in graph}
    for module in sorted(graph, key=lambda m: (layers[m] if layers[m] is not None else -1, m)):
        targets = ", ".join(sorted(short(t) for t in graph[module])) or "-"
        layer = "?" if layers[module] is None else layers[module]
        print(f"[{layer}] {short(module)} -> {targets}")
    upward = [
        (m, t)
        for m, ts in graph.items()
        for t in ts
        if layers[m] is not None and layers[t] is not None and layers[t] > layers[m]  # type: ignore[operator]
    ]
    print(f"imports against the layers: {len(upward)}")
    for module, target in sorted(upward):
        print(f"  {short(module)} -> {short(target)}")
    found = cycles(graph)
    print(f"cycles: {len(found)}")
    for group in found:
        print("  " + " <-> ".join(short(m) for m in group))


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
