"""Every Python snippet in README.md and docs/*.md runs, and uses no undefined name.

How the snippets are run (for authors of the docs):

- A fenced block must name its language. Blocks in ``python`` run; any other
  language (``sh``, ``text``, ``yaml``, ...) is not Python and is not run.
- The ``python`` blocks of one page run in order in one namespace, as a reader
  reads them: a later block may use a name an earlier one defined.
- A ``python`` block that must not run (it reads files that do not exist here, or
  it is an excerpt of a larger module) says so on the line right before it:
  ``<!-- snippet: not run, <the reason> -->``. It is still compiled.
- Names are checked statically too (``symtable``): a name used inside a function
  the snippet never calls must still be defined, by the snippet or an import.
- What the test provides: ``myapi_pb2`` / ``myapi_pb2_grpc`` stand for your generated
  code (``GetOrder``, ``Order``, ``OrdersStub`` with a unary ``Get`` over the echo
  method), and the example targets (``localhost:50051``, ``orders.internal:443``,
  ``orders:50051``) are replaced by a loopback echo server's address, which is
  also in ``GRPC_POOL_TARGET`` (with ``GRPC_POOL_INSECURE=1``). Pools,
  channels and loggers a page leaves behind are closed or restored after it.
"""

from __future__ import annotations

import builtins
import logging
import re
import symtable
import sys
import types
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from grpc_pool import _fork
from grpc_pool.testing import ECHO, EchoServer

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("**/*.md"))]
FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```[ \t]*$", flags=re.MULTILINE | re.DOTALL)
NOT_RUN = re.compile(r"<!-- snippet: not run, [^>]+ -->\s*\Z")
EXAMPLE_TARGETS = ("localhost:50051", "orders.internal:443", "orders:50051")


@dataclass(frozen=True)
class Block:
    page: Path
    line: int
    language: str
    code: str
    run: bool

    def __str__(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks(page: Path) -> list[Block]:
    text = page.read_text()
    found = []
    for match in FENCE.finditer(text):
        before = text[: match.start()]
        found.append(
            Block(
                page,
                before.count("\n") + 1,
                match.group(1).strip(),
                match.group(2),
                run=not NOT_RUN.search(before),
            )
        )
    return found


def undefined_names(source: str, provided: set[str]) -> set[str]:
    """Names read somewhere in ``source`` (functions included) that nothing defines:
    not the module's own assignments or imports, not a builtin, not ``provided``."""
    top = symtable.symtable(source, "<snippet>", "exec")
    defined = {
        s.get_name()
        for s in top.get_symbols()
        if s.is_assigned() or s.is_imported() or s.is_namespace()
    }
    known = defined | set(dir(builtins)) | provided

    def unknown(table: symtable.SymbolTable) -> Iterator[str]:
        for s in table.get_symbols():
            outer = table is top or s.is_global()  # resolved at module level
            if outer and s.is_referenced() and s.get_name() not in known:
                yield s.get_name()
        for child in table.get_children():
            yield from unknown(child)

    return set(unknown(top))


# -- what the snippets may assume ---------------------------------------------------
class GetOrder:
    """Stands in for a generated request message."""

    def __init__(self, id: int = 0) -> None:
        self.id = id

    def SerializeToString(self) -> bytes:
        return str(self.id).encode()


class Order:
    """Stands in for a generated response message."""

    def __init__(self, id: int = 0) -> None:
        self.id = id

    @classmethod
    def FromString(cls, data: bytes) -> Order:
        return cls(int(data))


class OrdersStub:
    """Stands in for a generated stub: ``Get`` is a unary call (served by the echo)."""

    def __init__(self, channel: grpc.Channel) -> None:
        self.Get = channel.unary_unary(
            ECHO,
            request_serializer=GetOrder.SerializeToString,
            response_deserializer=Order.FromString,
        )


@pytest.fixture
def generated_code(monkeypatch: pytest.MonkeyPatch) -> None:
    pb2 = types.ModuleType("myapi_pb2")
    pb2.GetOrder = GetOrder  # type: ignore[attr-defined]
    pb2.Order = Order  # type: ignore[attr-defined]
    pb2_grpc = types.ModuleType("myapi_pb2_grpc")
    pb2_grpc.OrdersStub = OrdersStub  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "myapi_pb2", pb2)
    monkeypatch.setitem(sys.modules, "myapi_pb2_grpc", pb2_grpc)


@pytest.fixture
def pool_environment(monkeypatch: pytest.MonkeyPatch, server: EchoServer) -> None:
    """What ``PoolConfig.from_env()`` reads in the snippets: the echo server, plaintext."""
    monkeypatch.setenv("GRPC_POOL_TARGET", server.target)
    monkeypatch.setenv("GRPC_POOL_INSECURE", "1")


def run_page(page: Path, target: str) -> None:
    """Every runnable block of ``page`` in order, in one namespace."""
    runnable = [b for b in blocks(page) if b.language == "python" and b.run]
    for block in blocks(page):
        if block.language == "python":
            compile(block.code, str(block), "exec")  # not-run blocks too
    if not runnable:
        return
    missing = undefined_names("\n".join(b.code for b in runnable), set())
    assert not missing, f"{page.name}: undefined names {sorted(missing)} in its snippets"
    namespace: dict[str, Any] = {"__name__": f"snippets_{page.stem}"}
    grpc_pool_logger = logging.getLogger("grpc_pool")
    before = set(_fork._live)
    level = grpc_pool_logger.level
    try:
        for block in runnable:
            code = block.code
            for example in EXAMPLE_TARGETS:
                code = code.replace(example, target)
            try:
                exec(compile(code, str(block), "exec"), namespace)
            except Exception as error:
                raise AssertionError(f"{block} failed: {error!r}") from error
    finally:
        grpc_pool_logger.setLevel(level)
        # Every pool the page started, also one rebound or made inside a call.
        for support in set(_fork._live) - before:
            pool = support._reader.owner
            if pool is not None:
                pool.close(grace=0)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_python_snippet_runs(
    page: Path, server: EchoServer, generated_code: None, pool_environment: None
) -> None:
    """The page's ``python`` blocks compile, define every name they use, and run in
    order against a loopback echo server, with no error."""
    run_page(page, server.target)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_fenced_block_names_its_language(page: Path) -> None:
    """No unlabeled fence: whether a block runs is always written down."""
    unlabeled = [str(b) for b in blocks(page) if not b.language]
    assert not unlabeled, f"give these blocks a language (python, sh, text, ...): {unlabeled}"


def test_the_checker_finds_undefined_names() -> None:
    """The static check sees a name used only inside a function, and nothing else."""
    source = "import os\nx = 1\ndef f(a):\n    return os.sep, x, a, len(a), EchoStub\n"
    assert undefined_names(source, set()) == {"EchoStub"}
    assert undefined_names(source, {"EchoStub"}) == set()
