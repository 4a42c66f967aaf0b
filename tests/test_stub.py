"""pool.stub(StubClass): cached per channel, never bound to a retired channel."""

from __future__ import annotations

from typing import Any

import grpc

from grpc_pool.testing.echo import ECHO, EchoServer


class EchoStub:
    """Shaped like a generated stub: builds its multi-callables in __init__."""

    instances = 0

    def __init__(self, channel: grpc.Channel) -> None:
        EchoStub.instances += 1
        self.channel = channel
        self.Echo = channel.unary_unary(ECHO)


def test_stub_is_cached_per_channel(make_pool: Any, server: EchoServer) -> None:
    """One stub per channel however many calls; each call's stub works."""
    EchoStub.instances = 0
    pool = make_pool(server.target, size=3)
    pool.wait_ready(timeout=10, min_ready=3)
    stubs = [pool.stub(EchoStub) for _ in range(30)]
    assert EchoStub.instances == 3
    assert {id(s.channel) for s in stubs} == {id(c) for c in pool._snapshot}
    assert all(s.Echo(b"s", timeout=5) == b"s" for s in stubs)


def test_stub_never_bound_to_a_retired_channel(make_pool: Any, server: EchoServer) -> None:
    """After scale_down, stubs come only from channels still in rotation."""
    pool = make_pool(server.target, size=4)
    pool.wait_ready(timeout=10, min_ready=4)
    for _ in range(8):
        pool.stub(EchoStub)
    pool.scale_down(3)
    live = pool._snapshot
    assert len(live) == 1
    assert all(pool.stub(EchoStub).channel is live[0] for _ in range(10))
