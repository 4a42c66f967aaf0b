"""One published PoolState, the reaper, and the writer's rules as pure functions."""

from __future__ import annotations

import threading
import time
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

import grpc_pool
from grpc_pool._channel.pooled import PooledChannel
from grpc_pool._contract.state import PoolState, SlotStatus
from grpc_pool._writer.policy import autoscale, victims
from grpc_pool.testing import ECHO, EchoServer

from .conftest import FAST, wait_until


def test_totals_never_decrease_while_channels_churn(server: EchoServer) -> None:
    """stats() hammered from 4 threads while RPCs run and the pool scales up and
    down (channels retire and close all the time): rpcs_total, connects and
    disconnects never go down between two reads of one thread (a counter that
    goes down reads as a reset to Prometheus)."""
    pool = grpc_pool.Pool(server.target, size=4, **FAST)
    stop = threading.Event()
    problems: list[str] = []

    def rpcs() -> None:
        echo = pool.channel.unary_unary(ECHO)
        while not stop.is_set():
            try:
                echo(b"x", timeout=5, wait_for_ready=True)
            except Exception as error:  # the pool's own errors would be a bug here
                problems.append(f"rpc: {type(error).__name__}: {error}")

    def hammer() -> None:
        last = (0, 0, 0)
        while not stop.is_set():
            stats = pool.stats()
            now = (stats.rpcs_total or 0, stats.connects, stats.disconnects)
            if any(b < a for a, b in zip(last, now, strict=True)):
                problems.append(f"went down: {last} -> {now}")
            last = now

    threads = [threading.Thread(target=rpcs) for _ in range(4)]
    threads += [threading.Thread(target=hammer) for _ in range(4)]
    try:
        pool.wait_ready(timeout=10, min_ready=4)
        for thread in threads:
            thread.start()
        for i in range(12):
            pool.resize(1 + i % 4 * 2)
            time.sleep(0.3)  # retired channels close (after retire_grace) while others come
        wait_until(lambda: pool.stats().retiring == 0, what="retired channels closed")
    finally:
        stop.set()
        for thread in threads:
            thread.join(15)
        pool.close(grace=1)
    assert not problems, problems[:5]
    assert pool.stats().rpcs_total and pool.stats().rpcs_total > 0


def test_one_state_object_holds_what_readers_see(make_pool: Any, server: EchoServer) -> None:
    """get_channel, status() and stats() read one frozen PoolState: its channels are
    the ready slots' channels, its picker is bound to them, its sizes agree."""
    pool = make_pool(server.target, size=3)
    pool.wait_ready(timeout=10, min_ready=3)
    state = pool._state
    assert isinstance(state, PoolState)
    assert state.expected == 3 and len(state.channels) == 3
    assert {v.state for v in state.views} == {SlotStatus.READY}
    assert {id(v.channel) for v in state.views} == {id(c) for c in state.channels}
    assert state.pick is not None and state.pick() in state.channels
    assert pool.get_channel() in state.channels
    assert pool.status().current_size == 3
    assert {s.state for s in pool.stats().slots} == {"ready"}


def test_the_writer_never_closes_a_grpc_channel(
    make_pool: Any, server: EchoServer, monkeypatch: Any
) -> None:
    """Closing grpc channels (and waiting for grpcio's pollers first) happens on the
    reaper thread, never on the writer's: scale down, reconnects and close."""
    closers: list[str] = []
    real = PooledChannel._close_grpc

    def recording(channel: PooledChannel) -> None:
        closers.append(threading.current_thread().name)
        real(channel)

    monkeypatch.setattr(PooledChannel, "_close_grpc", recording)
    pool = make_pool(server.target, size=4, retire_grace=0.0)
    pool.wait_ready(timeout=10, min_ready=4)
    pool.scale_down(3)
    wait_until(lambda: len(closers) >= 3, what="retired channels closed")
    server.restart(down_for=0.2)
    pool.wait_ready(timeout=10, min_ready=1)
    pool.close(grace=1)
    assert len(closers) >= 4
    assert set(closers) == {f"grpc_pool-reaper-{pool.name}"}, set(closers)


def test_listeners_added_from_a_listener_change_the_picker(
    make_pool: Any, server: EchoServer
) -> None:
    """Listener changes reach readers through the writer: with telemetry sampling on,
    get_channel emits GetChannelEvents while a listener is registered, none after."""
    pool = make_pool(server.target, size=2, telemetry_sample_rate=1)
    pool.wait_ready(timeout=10, min_ready=2)
    seen: list[Any] = []
    pool.add_listener(seen.append)
    for _ in range(5):
        pool.get_channel()
    wait_until(lambda: len([e for e in seen if e.name == "get_channel"]) >= 5, what="samples")
    pool.remove_listener(seen.append)
    before = len(seen)
    for _ in range(5):
        pool.get_channel()
    assert len(seen) == before


sizes = st.integers(1, 64)


@given(
    size=sizes,
    peak=st.integers(0, 10_000),
    bounds=st.tuples(sizes, sizes).map(sorted),
    rpcs=st.tuples(st.integers(1, 200), st.integers(1, 200))
    .filter(lambda r: r[0] != r[1])
    .map(sorted),
    delta=st.integers(1, 16),
)
def test_autoscale_rule_properties(
    size: int, peak: int, bounds: list[int], rpcs: list[int], delta: int
) -> None:
    """The autoscale rule: the new size stays within [min_size, max_size] (once the
    current size is), moves by at most max_resize_delta, moves toward the band, and
    does not move inside the hysteresis band."""
    low, high = bounds
    size = min(max(size, low), high)
    decision = autoscale(size, peak, low, high, rpcs[0], rpcs[1], delta)
    assert low <= decision.target <= high
    assert abs(decision.target - size) <= delta
    assert decision.min_channels <= decision.max_channels
    if decision.min_channels <= size <= decision.max_channels:
        assert decision.target == size
    elif size < decision.min_channels:
        assert size < decision.target <= decision.min_channels
    else:
        assert decision.max_channels <= decision.target < size


@given(
    loads=st.dictionaries(st.integers(0, 50), st.none() | st.integers(0, 100), min_size=1),
    count=st.integers(0, 60),
)
def test_victims_rule_properties(loads: dict[int, int | None], count: int) -> None:
    """Scale-down victims: exactly min(count, slots) distinct slots, every slot that
    is not ready before any ready one, and among ready ones the least loaded first."""
    chosen = victims(loads, count)
    assert len(chosen) == min(count, len(loads)) == len(set(chosen))
    kept = [s for s in loads if s not in chosen]
    for victim in chosen:
        for other in kept:
            if loads[victim] is not None:
                assert loads[other] is not None
                assert loads[victim] <= loads[other]  # type: ignore[operator]
