"""close(): idempotent, drains in-flight RPCs within the grace, joins every
thread it started; afterwards every call raises PoolClosed."""

from __future__ import annotations

import gc
import threading
from typing import Any

import grpc
import pytest

import grpc_pool
from grpc_pool._workers.watch import polling_supported
from grpc_pool.testing.echo import ECHO, SLOW, EchoServer

from .conftest import FAST, pool_threads, wait_until


def test_close_twice_joins_threads_and_refuses_later_calls(server: EchoServer) -> None:
    """After close() no pool thread is alive; a second close is fine; calls raise PoolClosed."""
    pool = grpc_pool.Pool(server.target, size=3, **FAST)
    pool.wait_ready(timeout=10, min_ready=3)
    names = {t.name for t in pool_threads()}
    own = {"writer", "reaper"} | ({"watch"} if polling_supported() else set())
    assert names == {f"grpc_pool-{role}-{pool.name}" for role in own} | {
        f"grpc_pool-worker-{pool.name}-{i}" for i in range(3)
    }
    pool.close()
    assert not [t for t in pool_threads() if t.is_alive()]
    pool.close()
    for call in (
        pool.get_channel,
        lambda: pool.get_channel(timeout=1),
        pool.wait_ready,
        lambda: pool.scale_up(1),
        lambda: pool.resize(2),
    ):
        with pytest.raises(grpc_pool.PoolClosed):
            call()
    assert pool.status().state == "down"
    assert "state=closed" in repr(pool)


def test_close_lets_in_flight_rpcs_finish(server: EchoServer) -> None:
    """RPCs running when close() is called complete if they end within the grace."""
    pool = grpc_pool.Pool(server.target, size=2, **FAST)
    pool.wait_ready(timeout=10, min_ready=2)
    calls = [pool.get_channel().unary_unary(SLOW).future(b"0.5", timeout=10) for _ in range(4)]
    pool.close(grace=10.0)
    assert [c.result(timeout=1) for c in calls] == [b"0.5"] * 4


def test_close_with_zero_grace_cancels_in_flight_rpcs(server: EchoServer) -> None:
    """close(grace=0) does not wait: in-flight RPCs are cancelled by the channel close."""
    pool = grpc_pool.Pool(server.target, size=1, **FAST)
    pool.wait_ready(timeout=10)
    call = pool.get_channel().unary_unary(SLOW).future(b"3", timeout=10)
    wait_until(lambda: server.calls == 1, 5, "slow call to reach the server")
    pool.close(grace=0)
    with pytest.raises(grpc.RpcError) as info:
        call.result(timeout=5)
    assert info.value.code() == grpc.StatusCode.CANCELLED  # type: ignore[attr-defined]


def test_context_manager_closes(server: EchoServer) -> None:
    """Leaving the with block closes the pool and its threads."""
    with grpc_pool.Pool(server.target, size=2, **FAST) as pool:
        pool.wait_ready(timeout=10)
        assert pool.get_channel().unary_unary(ECHO)(b"a", timeout=5) == b"a"
    assert not [t for t in pool_threads() if t.is_alive()]
    with pytest.raises(grpc_pool.PoolClosed):
        pool.get_channel()


def test_waiters_are_woken_by_close(dead_target: str) -> None:
    """A caller blocked in get_channel(timeout=...) gets PoolClosed when the pool closes."""
    pool = grpc_pool.Pool(dead_target, size=1, **FAST)
    errors: list[BaseException] = []

    def wait() -> None:
        try:
            pool.get_channel(timeout=30)
        except BaseException as exc:
            errors.append(exc)

    waiter = threading.Thread(target=wait)
    waiter.start()
    wait_until(lambda: waiter.is_alive(), 5)
    pool.close()
    waiter.join(10)
    assert not waiter.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], grpc_pool.PoolClosed)


def test_abandoned_pool_stops_its_threads(server: EchoServer) -> None:
    """A pool dropped without close() is collected and its threads end (weakref.finalize)."""
    pool = grpc_pool.Pool(server.target, size=2, **FAST)
    pool.wait_ready(timeout=10, min_ready=2)
    del pool
    gc.collect()
    wait_until(lambda: not pool_threads(), 10, "pool threads to end")


def test_pooled_channel_close_is_a_no_op(make_pool: Any, server: EchoServer) -> None:
    """close() or a with block on a handed-out channel cannot break the pool."""
    pool = make_pool(server.target, size=1)
    pool.wait_ready(timeout=10)
    channel = pool.get_channel()
    channel.close()
    with channel:
        pass
    assert channel.unary_unary(ECHO)(b"still", timeout=5) == b"still"
    assert isinstance(channel, grpc.Channel) and "PooledChannel" in repr(channel)


def test_repr_shows_name_target_ready_and_state(make_pool: Any, server: EchoServer) -> None:
    pool = make_pool(server.target, size=2, name="orders")
    pool.wait_ready(timeout=10, min_ready=2)
    assert repr(pool) == f"<Pool 'orders' target='{server.target}' ready=2/2 state=healthy>"


def test_several_pools_side_by_side(make_pool: Any, make_server: Any) -> None:
    """Pools are independent: their own threads, names, connections."""
    a, b = make_server(), make_server()
    pa = make_pool(a.target, size=2, name="a")
    pb = make_pool(b.target, size=3, name="b")
    pa.wait_ready(timeout=10, min_ready=2)
    pb.wait_ready(timeout=10, min_ready=3)
    for _ in range(6):
        pa.get_channel().unary_unary(ECHO)(b"1", timeout=5)
        pb.get_channel().unary_unary(ECHO)(b"2", timeout=5)
    assert (len(a.peers), len(b.peers)) == (2, 3)
    pa.close()
    assert pb.status().state == "healthy"


def test_a_channel_in_hand_during_close_raises_pool_closed(server: EchoServer) -> None:
    """A caller that got a channel before close() and calls it during the grace
    (its channel already closed: nothing was in flight) gets PoolClosed, a
    grpc.RpcError CANCELLED naming the closed pool, never grpcio's ValueError;
    building a multi-callable on it is refused the same way."""
    pool = grpc_pool.Pool(server.target, size=2, **FAST)
    pool.wait_ready(timeout=10, min_ready=2)
    held = pool.get_channel()
    echo = held.unary_unary(ECHO)
    closer = threading.Thread(target=pool.close, kwargs={"grace": 5.0})
    closer.start()
    try:
        wait_until(lambda: held.closed, what="the idle channel closed early")
        with pytest.raises(grpc_pool.PoolClosed) as caught:
            echo(b"late", timeout=5)
        assert isinstance(caught.value, grpc.RpcError)
        assert caught.value.code() is grpc.StatusCode.CANCELLED
        assert "pool is closed" in caught.value.details()
        with pytest.raises(grpc_pool.PoolClosed):
            held.unary_unary(SLOW, _registered_method=True)
        with pytest.raises(grpc_pool.PoolClosed):
            pool.channel.unary_unary(ECHO)(b"via the pool channel")
    finally:
        closer.join(15)
