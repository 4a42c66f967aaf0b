"""The house rules, pinned: layers, no import cycle, no mixin, small modules, one
reader API. ``python -m tests.import_graph`` prints the graph these tests read."""

from __future__ import annotations

import ast
import threading
from typing import Any

import grpc_pool
from grpc_pool._contract.state import PoolState
from grpc_pool.testing import ECHO, EchoServer

from . import import_graph as ig
from .conftest import FAST

GRAPH = ig.imports_of(ig.core_modules())
FOLDERS = ("_base", "_config", "_contract", "_channel", "_workers", "_writer", "_readers")


def test_no_import_cycle_of_any_kind() -> None:
    """Counting function-local and TYPE_CHECKING imports, the core has no cycle."""
    assert ig.cycles(GRAPH) == []


def test_imports_point_down_the_layers() -> None:
    """leaves <- config <- contract <- channel <- workers/readers <- writer <- fork
    and control <- Pool <- the public face: no import runs against that order."""
    upward = [
        (module, target)
        for module, targets in GRAPH.items()
        for target in targets
        if ig.layer_of(target) > ig.layer_of(module)
    ]
    assert upward == []


def test_workers_and_readers_never_import_the_writer() -> None:
    """The data flows worker -> writer -> published state -> readers, never back."""
    for module, targets in GRAPH.items():
        if module.startswith(("grpc_pool._workers", "grpc_pool._readers")):
            assert not [t for t in targets if t.startswith("grpc_pool._writer")], module
        if module.startswith("grpc_pool._readers"):
            assert not [t for t in targets if t.startswith("grpc_pool._workers")], module


def test_nothing_below_the_public_face_names_pool() -> None:
    """Only the face (``_pool``, ``_constructors``, ``__init__``) knows the Pool class:
    below it, collaborators get what they need (a Reader, a post function)."""
    face = {"grpc_pool._pool", "grpc_pool._constructors", "grpc_pool.__init__"}
    for module, path in ig.core_modules().items():
        if module in face:
            continue
        assert "grpc_pool._pool" not in GRAPH[module], module
        tree = ast.parse(path.read_text())
        names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
        names |= {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
        assert "Pool" not in names, module


def test_no_mixins_in_the_core() -> None:
    """No core class derives from another core class of a different module (a mixin
    re-declaring its host's fields); the Pool, the writer and a worker have no base."""
    classes: dict[str, str] = {}
    trees = {m: ast.parse(p.read_text()) for m, p in ig.core_modules().items()}
    for module, tree in trees.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                classes.setdefault(node.name, module)
    for module, tree in trees.items():
        for node in ast.walk(tree):
            if not isinstance(node, ast.ClassDef):
                continue
            bases = [b.id for b in node.bases if isinstance(b, ast.Name)]
            foreign = [b for b in bases if b in classes and classes[b] != module]
            if node.name in ("Pool", "Writer", "Worker"):
                assert bases == [], (module, node.name, bases)
            # Errors and events form hierarchies on purpose (one root each).
            if module not in ("grpc_pool._base.errors", "grpc_pool._contract.events"):
                assert foreign == [], (module, node.name, foreign)


def test_no_core_module_over_400_lines() -> None:
    """A newcomer reads any core module in one sitting."""
    sizes = {m: len(p.read_text().splitlines()) for m, p in ig.core_modules().items()}
    assert {m: n for m, n in sizes.items() if n > 400} == {}


def test_each_folder_says_its_role_and_what_it_may_import() -> None:
    """Every folder's ``__init__`` has a docstring naming what it may import."""
    for folder in FOLDERS:
        doc = ast.get_docstring(ast.parse((ig.PACKAGE / folder / "__init__.py").read_text()))
        assert doc and "import" in doc, folder


class _Flipping:
    """Stands in for the reader's ``state`` slot: the first two reads get a state
    with channels, every later one an empty state, as if the writer published
    between (a resize to slots still connecting)."""

    def __init__(self, full: PoolState[Any]) -> None:
        self.reads = 0
        self._full = full

    def __get__(self, obj: object, owner: type | None = None) -> PoolState[Any]:
        self.reads += 1
        return self._full if self.reads <= 2 else PoolState(expected=self._full.expected)

    def __set__(self, obj: object, value: object) -> None:
        pass  # the writer's publishes during the test are not seen


def test_slow_get_channel_reads_the_state_once(make_pool: Any, server: EchoServer) -> None:
    """``get_channel(timeout=...)`` reads the published state once: a publish that
    empties the pool between two reads cannot hand the picker a state without
    channels (at c492233 the slow path read ``self._state`` again after checking
    its channels, and ``_pick``'s assert failed)."""
    pool = make_pool(server.target, size=2, **FAST)
    pool.wait_ready(timeout=10, min_ready=2)
    holder = getattr(pool, "_reader", pool)  # the reader API; the old code: the pool
    name = "state" if hasattr(holder, "state") else "_state"
    full = getattr(holder, name)
    flipping = _Flipping(full)
    original = type(holder)
    patched = type("Patched", (original,), {"__slots__": (), name: flipping})
    holder.__class__ = patched
    try:
        channel = pool.get_channel(timeout=1.0)
    finally:
        holder.__class__ = original
    assert channel in full.channels
    assert channel.unary_unary(ECHO)(b"once", timeout=5) == b"once"


def test_waiters_wake_on_the_generation_they_read(make_pool: Any, dead_target: str) -> None:
    """A reader waiting for a channel waits on the state it read; the next publish
    (here: the close) sets that state's event and wakes it, with no shared condition."""
    pool = make_pool(dead_target, size=1, **FAST)
    state = pool._state
    errors: list[BaseException] = []

    def wait() -> None:
        try:
            pool.get_channel(timeout=60)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=wait)
    thread.start()
    pool.close(grace=0)
    thread.join(10)
    assert not thread.is_alive()
    assert state.superseded.is_set()
    assert [type(e) for e in errors] == [grpc_pool.PoolClosed]


def test_the_writer_publishes_once_per_batch(dead_target: str) -> None:
    """A resize to 6 slots spread over 3 backends is one batch: its handler returns
    the new layout (6 views, first addresses as moves) and the loop publishes once,
    where the writer used to publish once per new slot and once more at the end."""
    from grpc_pool._contract.commands import Close, Reply, Resize
    from grpc_pool._contract.events import Dispatcher
    from grpc_pool._writer.loop import Writer

    host, port = dead_target.rsplit(":", 1)
    config = grpc_pool.PoolConfig(
        target=f"ipv4:{host}:{port},127.0.0.2:{port},127.0.0.3:{port}", **FAST
    )
    published: list[PoolState[Any]] = []
    events = Dispatcher("batch")
    writer = Writer(config, None, "batch", events, lambda emit: None, published.append)
    try:
        writer._act(writer._spread.start(()))  # static addresses: known at once
        published.clear()
        reply = Reply()
        effects = writer._handle(Resize(lambda size: 6, reply))
        assert not published  # the handler decided; nothing acted yet
        writer._act(effects)
        assert len(published) == 1
        state = published[0]
        assert state.expected == 6
        assert sorted(v.address or "" for v in state.views) == sorted(
            [f"{host}:{port}"] * 2 + [f"127.0.0.2:{port}"] * 2 + [f"127.0.0.3:{port}"] * 2
        )
    finally:
        writer._act(writer._handle(Close(0.0, Reply())))
        writer._finish_close(None)
        events.close()
