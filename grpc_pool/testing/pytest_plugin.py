"""pytest fixtures for tests that need a pool against a local gRPC server.

Installed with grpc_pool (a ``pytest11`` entry point named
``grpc_pool.testing.pytest_plugin``). This module defines fixtures only, no hooks:
loaded, it changes nothing in a test run; a fixture runs only in a test that asks
for it. pytest autoloads it; with ``PYTEST_DISABLE_PLUGIN_AUTOLOAD`` set, enable it
with ``-p grpc_pool.testing.pytest_plugin`` or, in your top-level conftest.py::

    pytest_plugins = ["grpc_pool.testing.pytest_plugin"]

then ask for ``channel_pool`` (and ``grpc_server`` when a test inspects the server)::

    def test_get_order(channel_pool):
        stub = channel_pool.stub(OrdersStub)
        assert stub.Get(GetOrder(id=1), timeout=5).id == 1

``grpc_server`` here is the bundled echo server. For your own service, override
``grpc_server`` with a fixture that starts a real ``grpc.server`` with your (fake)
servicer on ``127.0.0.1:0`` and yields its target; ``channel_pool`` takes a target
str or an object with a ``.target`` str (such as the echo server). The whole test
module is in docs/integrations.md ("pytest")::

    @pytest.fixture
    def grpc_server():
        server = grpc.server(ThreadPoolExecutor(max_workers=8))
        add_OrdersServicer_to_server(FakeOrders(), server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        yield f"127.0.0.1:{port}"  # channel_pool connects to this target
        server.stop(None).wait(10)

Override ``grpc_pool_options`` in a conftest.py or test module to change the pool.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from .. import Pool
from .echo import EchoServer

__all__ = ["READY_TIMEOUT", "channel_pool", "grpc_pool_options", "grpc_server"]

# How long a test waits for the pool's first ready channel before failing.
READY_TIMEOUT = 10.0


@pytest.fixture
def grpc_server() -> Iterator[EchoServer]:
    """A real gRPC echo server on 127.0.0.1, a free port; stopped at teardown."""
    with EchoServer() as server:
        yield server


@pytest.fixture
def grpc_pool_options() -> dict[str, Any]:
    """Pool options for ``channel_pool``: plaintext, small, quick to reconnect."""
    return {
        "size": 2,
        "insecure": True,
        "connect_timeout": 5.0,
        "backoff_initial": 0.05,
        "backoff_max": 0.5,
        "retire_grace": 1.0,
    }


@pytest.fixture
def channel_pool(grpc_server: object, grpc_pool_options: dict[str, Any]) -> Iterator[Pool]:
    """A pool against ``grpc_server`` with one channel ready; closed at teardown.

    ``grpc_server`` is the bundled echo server or a user's override yielding a target
    str (or any object with a ``.target`` str). Closed with grace 0: a test's RPCs are
    over by then, and the pool's threads are joined before the next test starts (and
    before ``grpc_server`` stops).
    """
    pool = Pool(target_of(grpc_server), **grpc_pool_options)
    try:
        pool.wait_ready(timeout=READY_TIMEOUT)
        yield pool
    finally:
        pool.close(grace=0)


def target_of(server: object) -> str:
    """The target ``grpc_server`` stands for: itself when a str, else its ``.target``;
    anything else is a TypeError that says what an override must yield."""
    if isinstance(server, str):
        return server
    target = getattr(server, "target", None)
    if isinstance(target, str):
        return target
    raise TypeError(
        f"grpc_server yielded {type(server).__name__} {server!r}: channel_pool expects a "
        "target str such as '127.0.0.1:50051', or an object whose .target is one"
    )
