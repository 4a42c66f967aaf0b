"""Scaling: expected size and connected channels follow scale_up/scale_down/
resize; one scaling call at a time; retired channels drain before closing."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import pytest

import grpc_pool
from grpc_pool._contract.commands import Call, Reply
from grpc_pool.testing.echo import ECHO, SLOW, EchoServer

from .conftest import wait_until


def test_scale_up_down_resize(make_pool: Any, server: EchoServer) -> None:
    """Each call returns the new expected size; connections follow it."""
    pool = make_pool(server.target, size=2)
    pool.wait_ready(timeout=10, min_ready=2)
    assert pool.scale_up(3) == 5
    assert pool.wait_ready(timeout=10, min_ready=5).current_size == 5
    assert pool.scale_down(2) == 3
    assert pool.status().current_size == 3  # out of rotation before scale_down returns
    assert pool.resize(6) == 6
    assert pool.wait_ready(timeout=10, min_ready=6) == grpc_pool.PoolStatus(6, 6, "healthy")
    assert pool.resize(1) == 1
    assert pool.status() == grpc_pool.PoolStatus(1, 1, "healthy")
    assert sorted(s.slot for s in pool.stats().slots) == [0]
    assert len([t for t in threading.enumerate() if t.name.startswith("grpc_pool-worker-")]) >= 1
    wait_until(
        lambda: (
            len([t for t in threading.enumerate() if t.name.startswith("grpc_pool-worker-")]) == 1
        ),
        10,
        "stopped workers to exit",
    )


def test_scale_up_reuses_freed_slot_ids(make_pool: Any, server: EchoServer) -> None:
    """Slot ids stay in 0..size-1: a slot freed by scale_down is taken again by scale_up."""
    pool = make_pool(server.target, size=4)
    pool.wait_ready(timeout=10, min_ready=4)
    pool.scale_down(2)
    pool.scale_up(2)
    assert sorted(s.slot for s in pool.stats().slots) == [0, 1, 2, 3]
    pool.wait_ready(timeout=10, min_ready=4)


def test_scale_down_retires_the_least_loaded_channel(make_pool: Any, server: EchoServer) -> None:
    """Scale-down stops the slot with no RPC in flight, not the busy ones."""
    pool = make_pool(server.target, size=3, retire_grace=10.0)
    pool.wait_ready(timeout=10, min_ready=3)
    busy, idle = list(pool._snapshot[:2]), pool._snapshot[2]
    calls = [c.unary_unary(SLOW).future(b"1.0", timeout=10) for c in busy]
    wait_until(lambda: all(c.in_flight == 1 for c in busy), 5, "RPCs in flight")
    pool.scale_down(1)
    assert idle not in pool._snapshot
    assert set(pool._snapshot) == set(busy)
    assert [f.result(timeout=10) for f in calls] == [b"1.0", b"1.0"]


def test_scale_down_refuses_to_empty_the_pool(make_pool: Any, server: EchoServer) -> None:
    """scale_down to zero raises WouldEmptyPool (an InvalidConfig) and changes nothing."""
    pool = make_pool(server.target, size=2)
    pool.wait_ready(timeout=10, min_ready=2)
    with pytest.raises(grpc_pool.WouldEmptyPool, match="n=2"):
        pool.scale_down(2)
    with pytest.raises(grpc_pool.InvalidConfig):
        pool.scale_down(5)
    assert pool.status() == grpc_pool.PoolStatus(2, 2, "healthy")


def test_concurrent_scaling_gets_scaling_in_progress(make_pool: Any, dead_target: str) -> None:
    """A scaling call while another runs raises ScalingInProgress at once, without waiting."""
    pool = make_pool(dead_target, size=2)
    hold = threading.Event()
    pool._writer.queue.put(Call(lambda: hold.wait(20), Reply()))  # keep the writer busy
    results: list[Any] = []
    first = threading.Thread(target=lambda: results.append(pool.scale_up(1)))
    first.start()
    wait_until(pool._control.scaling.locked, 5, "first scaling call to start")
    for call in (lambda: pool.scale_down(1), lambda: pool.resize(4), lambda: pool.scale_up(2)):
        with pytest.raises(grpc_pool.ScalingInProgress):
            call()
    hold.set()
    first.join(10)
    assert results == [3]
    assert pool.resize(4) == 4  # free again once the first call ended


def test_rpcs_on_retired_channels_finish_within_grace(make_pool: Any, server: EchoServer) -> None:
    """scale_down retires channels with RPCs in flight; those RPCs complete."""
    pool = make_pool(server.target, size=4, retire_grace=10.0)
    pool.wait_ready(timeout=10, min_ready=4)
    channels = list(pool._snapshot)
    futures = [c.unary_unary(SLOW).future(b"0.5", timeout=10) for c in channels for _ in range(2)]
    wait_until(lambda: sum(c.in_flight or 0 for c in channels) == 8, 5, "RPCs in flight")
    pool.scale_down(3)
    assert [f.result(timeout=10) for f in futures] == [b"0.5"] * 8
    assert pool.stats().retiring == 3  # still open: the grace has not ended


def test_retired_channel_works_within_grace_then_closes(make_pool: Any, server: EchoServer) -> None:
    """A caller holding a retired channel can still start RPCs inside the grace;
    after the grace the pool closes it (no leaked connection)."""
    pool = make_pool(server.target, size=2, retire_grace=1.0)
    pool.wait_ready(timeout=10, min_ready=2)
    held = list(pool._snapshot)
    pool.scale_down(1)
    retired = [c for c in held if c not in pool._snapshot]
    assert len(retired) == 1
    assert retired[0].unary_unary(ECHO)(b"late", timeout=5) == b"late"
    wait_until(lambda: pool.stats().retiring == 0, 10, "retired channel closed")
    # Closed by the pool, as it must be after the grace: a pool error, not grpcio's ValueError.
    with pytest.raises(grpc_pool.ChannelRetired):
        retired[0].unary_unary(ECHO)(b"too late", timeout=5)


def test_scale_down_never_hands_out_a_closed_channel(make_pool: Any, server: EchoServer) -> None:
    """Callers doing RPCs while the pool shrinks and grows never see a closed channel."""
    pool = make_pool(server.target, size=6, retire_grace=2.0)
    pool.wait_ready(timeout=10, min_ready=6)
    stop = threading.Event()
    errors: list[BaseException] = []
    ok = [0]

    def call() -> None:
        while not stop.is_set():
            try:
                pool.get_channel(timeout=5).unary_unary(ECHO)(b"x", timeout=5)
                ok[0] += 1
            except (ValueError, grpc.RpcError) as exc:
                errors.append(exc)

    with ThreadPoolExecutor(8) as executor:
        for _ in range(8):
            executor.submit(call)
        for size in (2, 5, 1, 4, 2, 6, 3):
            pool.resize(size)
            pool.wait_ready(timeout=10, min_ready=1)
        stop.set()
    assert errors == [] and ok[0] > 0
