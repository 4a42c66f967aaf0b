"""Connections against real servers on loopback: one TCP connection per slot,
fast failure when down, waiting for readiness, recovery after a restart."""

from __future__ import annotations

import re
import threading
import time
from typing import Any

import grpc
import pytest

import grpc_pool
from grpc_pool.testing.echo import ECHO, EchoServer

from .conftest import wait_until


def echo(channel: grpc.Channel, payload: bytes = b"ping") -> bytes:
    return channel.unary_unary(ECHO)(payload, timeout=5)  # type: ignore[no-any-return]


@pytest.mark.parametrize("size", [1, 4, 7])
def test_each_slot_is_its_own_tcp_connection(make_pool: Any, server: EchoServer, size: int) -> None:
    """N slots give N distinct client peers on the server (grpcio would share one)."""
    pool = make_pool(server.target, size=size)
    pool.wait_ready(timeout=10, min_ready=size)
    for _ in range(size * 3):
        assert echo(pool.get_channel()) == b"ping"
    assert len(server.peers) == size
    assert len({s.channel_id for s in pool.stats().slots}) == size


def test_plain_grpc_channels_share_one_connection(server: EchoServer) -> None:
    """The control for the test above: identical grpcio channels share a connection."""
    channels = [grpc.insecure_channel(server.target) for _ in range(4)]
    try:
        for channel in channels:
            echo(channel)
        assert len(server.peers) == 1
    finally:
        for channel in channels:
            channel.close()


def test_user_cannot_turn_off_distinct_connections(make_pool: Any, server: EchoServer) -> None:
    """A user option re-enabling the global subchannel pool is overridden."""
    pool = make_pool(server.target, size=3, options=[("grpc.use_local_subchannel_pool", 0)])
    pool.wait_ready(timeout=10, min_ready=3)
    for _ in range(6):
        echo(pool.get_channel())
    assert len(server.peers) == 3


def test_get_channel_raises_at_once_when_down(make_pool: Any, dead_target: str) -> None:
    """With no server, get_channel() raises NoChannelAvailable without waiting."""
    pool = make_pool(dead_target, size=2)
    with pytest.raises(grpc_pool.NoChannelAvailable) as info:
        pool.get_channel()
    assert pool.name in str(info.value)
    assert pool.status() == grpc_pool.PoolStatus(2, 0, "down")


def test_get_channel_with_timeout_returns_when_server_comes_up(
    make_pool: Any, dead_target: str
) -> None:
    """A caller waiting in get_channel(timeout=...) gets a working channel once the server is up."""
    pool = make_pool(dead_target, size=2)
    got: list[Any] = []
    waiter = threading.Thread(target=lambda: got.append(pool.get_channel(timeout=20)))
    waiter.start()
    host, port = dead_target.rsplit(":", 1)
    with EchoServer(port=int(port), host=host):
        waiter.join(25)
        assert not waiter.is_alive() and len(got) == 1
        assert echo(got[0]) == b"ping"


def test_get_channel_timeout_expires_with_no_channel(make_pool: Any, dead_target: str) -> None:
    """get_channel(timeout=...) raises NoChannelAvailable when no channel comes in time."""
    pool = make_pool(dead_target, size=1)
    with pytest.raises(grpc_pool.NoChannelAvailable, match="after waiting"):
        pool.get_channel(timeout=0.2)


def test_wait_ready_raises_pool_timeout(make_pool: Any, dead_target: str) -> None:
    """wait_ready raises PoolTimeout (also a TimeoutError) when the server stays down."""
    pool = make_pool(dead_target, size=2)
    with pytest.raises(TimeoutError) as info:
        pool.wait_ready(timeout=0.3)
    assert isinstance(info.value, grpc_pool.PoolTimeout)
    wait_until(lambda: pool.stats().slots[0].failures >= 1, 10, "a failed attempt")
    slot = pool.stats().slots[0]
    assert slot.last_error is not None and "while connecting" in slot.last_error
    with pytest.raises(grpc_pool.NoChannelAvailable, match="last errors"):
        pool.get_channel()


def test_wait_ready_min_ready(make_pool: Any, server: EchoServer) -> None:
    """wait_ready(min_ready=N) returns once N channels are ready."""
    pool = make_pool(server.target, size=3)
    status = pool.wait_ready(timeout=10, min_ready=3)
    assert status == grpc_pool.PoolStatus(3, 3, "healthy")


@pytest.mark.parametrize("grace", [None, 0.5], ids=["abrupt", "graceful-goaway"])
def test_restart_goes_down_then_healthy(make_pool: Any, server: EchoServer, grace: Any) -> None:
    """Server stop: status reads "down" within seconds without any RPC; after a
    restart on the same port every slot reconnects within the backoff bound."""
    size = 3
    pool = make_pool(server.target, size=size)
    pool.wait_ready(timeout=10, min_ready=size)
    first_peers = set(server.peers)
    server.stop(grace)
    started = time.monotonic()
    wait_until(lambda: pool.status().state == "down", 10, "status down")
    down_after = time.monotonic() - started
    with pytest.raises(grpc_pool.NoChannelAvailable):
        pool.get_channel()
    server.start()
    config = pool.config
    bound = config.backoff_max * (1 + config.backoff_jitter) + config.connect_timeout
    started = time.monotonic()
    assert pool.wait_ready(timeout=bound, min_ready=size).state == "healthy"
    print(
        f"\nserver stop ({grace=}): down after {down_after:.3f}s; restart: healthy after "
        f"{time.monotonic() - started:.3f}s (bound {bound:.2f}s)"
    )
    for _ in range(size * 2):
        echo(pool.get_channel())
    assert len(server.peers - first_peers) == size  # new connections, one per slot
    stats = pool.stats()
    assert all(s.state == "ready" and s.reconnects >= 1 for s in stats.slots)
    assert stats.reconnects >= size


def test_long_outage_keeps_retrying(make_pool: Any, dead_target: str) -> None:
    """A worker never gives up: many failures in a row, every slot still retrying."""
    pool = make_pool(dead_target, size=2, backoff_initial=0.01, backoff_max=0.02)
    wait_until(
        lambda: all(s.failures >= 10 for s in pool.stats().slots), 20, "10 failures per slot"
    )
    assert len([t for t in threading.enumerate() if t.name.startswith("grpc_pool-worker-")]) == 2
    host, port = dead_target.rsplit(":", 1)
    with EchoServer(port=int(port), host=host):
        assert pool.wait_ready(timeout=10, min_ready=2).state == "healthy"


def test_tls_is_the_default(make_pool: Any, server: EchoServer) -> None:
    """Without insecure=True the pool speaks TLS: a plaintext server never gets ready,
    and the slot's last error says why (the TLS handshake)."""
    pool = make_pool(server.target, size=1, insecure=False, connect_timeout=1.0)
    with pytest.raises(grpc_pool.PoolTimeout):
        pool.wait_ready(timeout=1.5)
    assert server.calls == 0
    wait_until(lambda: pool.stats().slots[0].failures >= 1, 10, "a failed attempt")
    # grpcio 1.85 says "Tls handshake failed", 1.60 "Ssl handshake failed".
    assert re.search(r"(Tls|Ssl) handshake failed", pool.stats().slots[0].last_error or "")


def test_last_error_names_the_transport_cause(make_pool: Any, dead_target: str) -> None:
    """A refused connection is reported as such, not only as TRANSIENT_FAILURE."""
    pool = make_pool(dead_target, size=1)
    wait_until(lambda: pool.stats().slots[0].failures >= 1, 10, "a failed attempt")
    assert "Connection refused" in (pool.stats().slots[0].last_error or "")


def test_stats_give_people_an_age_and_a_wall_clock_time(make_pool: Any, server: EchoServer) -> None:
    """A ready slot's stats carry connected_for (seconds, >= 0, consistent with the
    monotonic connected_since) and connected_at (Unix time between the pool's start
    and now); a slot that is not connected has neither."""
    before = time.time()
    pool = make_pool(server.target, size=1)
    pool.wait_ready(timeout=10)
    slot = pool.stats().slots[0]
    after = time.time()
    assert slot.connected_since is not None and slot.connected_for is not None
    assert slot.connected_for >= 0.0
    assert slot.connected_at is not None and before <= slot.connected_at <= after
    server.stop()
    wait_until(lambda: pool.status().state == "down", 10, "pool down")
    down = pool.stats().slots[0]
    assert (down.connected_for, down.connected_at) == (None, None)
