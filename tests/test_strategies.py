"""Strategies pick only from the snapshot they were given, never raise on a
snapshot that shrank, and balance as documented."""

from __future__ import annotations

import collections
import random
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import grpc_pool
from grpc_pool._readers.strategy import PowerOfTwo, Random, RoundRobin
from grpc_pool.testing.echo import ECHO, SLOW, EchoServer

from .conftest import Recorder, wait_until


class _Item:
    """Stands in for a channel in pure selection tests: an in-flight count, or none."""

    def __init__(self, in_flight: int | None = None) -> None:
        self._counter = None if in_flight is None else SimpleNamespace(in_flight=in_flight)


@given(sizes=st.lists(st.integers(1, 9), min_size=1, max_size=30))
def test_builtin_strategies_pick_from_any_snapshot(sizes: list[int]) -> None:
    """Over snapshots that grow and shrink between calls, every pick is an item of that snapshot."""
    strategies = [RoundRobin(), Random(), PowerOfTwo()]
    for n in sizes:
        items = tuple(_Item() for _ in range(n))
        for strategy in strategies:
            assert strategy.pick(items) in items  # type: ignore[arg-type]


def picks_across_threads(
    pick: Callable[[], object], threads: int = 8, calls: int = 1000
) -> Counter[int]:
    """How often each object (by id) came back: ``calls`` picks on each of ``threads``."""
    counts: Counter[int] = Counter()
    lock = threading.Lock()

    def run() -> None:
        local = Counter(id(pick()) for _ in range(calls))
        with lock:
            counts.update(local)

    workers = [threading.Thread(target=run) for _ in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join(10)
    assert not any(t.is_alive() for t in workers)
    return counts


def test_round_robin_is_even_across_threads() -> None:
    """8 threads x 1000 picks over 4 items: each item exactly 2000 times (atomic counter)."""
    items = tuple(_Item() for _ in range(4))
    rr = RoundRobin()
    counts = picks_across_threads(lambda: rr.pick(items))  # type: ignore[arg-type]
    assert sorted(counts.values()) == [2000] * 4


def test_pool_round_robin_is_even_across_threads(make_pool: Any, server: EchoServer) -> None:
    """get_channel()'s lock-free fast path: 8 threads x 1000 calls on a steady pool
    of 4 hand out each channel exactly 2000 times (no pick lost or doubled)."""
    pool = make_pool(server.target, size=4)
    pool.wait_ready(timeout=10, min_ready=4)
    snapshot = pool._snapshot
    counts = picks_across_threads(pool.get_channel)
    assert pool._snapshot is snapshot, "a publish during the test would restart the cycle"
    assert counts == Counter({id(c): 2000 for c in snapshot})


@pytest.mark.parametrize("strategy", ["round_robin", "random", "power_of_two"])
def test_get_channel_follows_every_publish(
    make_pool: Any, server: EchoServer, strategy: str
) -> None:
    """After scale_up, scale_down and listener changes (sampling on and off),
    get_channel() hands out the channels of the current snapshot and no other."""
    pool = make_pool(server.target, size=2, strategy=strategy, telemetry_sample_rate=1)

    def handed_out() -> set[str]:
        return {pool.get_channel().channel_id for _ in range(200)}

    def current() -> set[str]:
        return {c.channel_id for c in pool._snapshot}

    pool.wait_ready(timeout=10, min_ready=2)
    assert handed_out() == current()
    pool.scale_up(2)
    pool.wait_ready(timeout=10, min_ready=4)
    assert handed_out() == current() and len(current()) == 4
    listener = Recorder()
    pool.add_listener(listener)
    assert handed_out() == current()
    wait_until(lambda: listener.named("get_channel"), 5, "sampled get_channel events")
    pool.scale_down(3)
    assert handed_out() == current() and len(current()) == 1
    pool.remove_listener(listener)
    assert handed_out() == current()


def test_power_of_two_avoids_the_loaded_channel() -> None:
    """With two channels, the one with fewer RPCs in flight is always chosen."""
    busy, free = _Item(in_flight=5), _Item(in_flight=0)
    p2c = PowerOfTwo()
    assert all(p2c.pick((busy, free)) is free for _ in range(200))  # type: ignore[arg-type]


def test_power_of_two_without_in_flight_balances_picks() -> None:
    """Without RPC counting, power_of_two evens out how often each channel is picked,
    and writes nothing on the channels it picks from (readers share them)."""
    for seed in range(20):  # seeded: the same picks on every run
        items = tuple(_Item() for _ in range(4))
        before = [vars(i).copy() for i in items]
        p2c = PowerOfTwo(random.Random(seed))
        picks = collections.Counter(id(p2c.pick(items)) for _ in range(400))  # type: ignore[arg-type]
        assert max(picks.values()) - min(picks.values()) <= 3, seed
        assert [vars(i) for i in items] == before


def test_power_of_two_counts_real_rpcs(make_pool: Any, server: EchoServer) -> None:
    """In a real pool, power_of_two steers new calls away from a channel with slow RPCs."""
    pool = make_pool(server.target, size=2, strategy="power_of_two")
    pool.wait_ready(timeout=10, min_ready=2)
    loaded = pool._snapshot[0]
    calls = [loaded.unary_unary(SLOW).future(b"1", timeout=10) for _ in range(3)]
    wait_until(lambda: loaded.in_flight == 3, 5, "3 RPCs in flight")
    picks = [pool.get_channel() for _ in range(50)]
    assert loaded not in picks
    assert [c.result(timeout=10) for c in calls] == [b"1"] * 3
    assert loaded.in_flight == 0 and loaded.rpcs_total == 3


@pytest.mark.parametrize("name", ["round_robin", "random", "power_of_two"])
def test_named_strategies_serve_rpcs(make_pool: Any, server: EchoServer, name: str) -> None:
    pool = make_pool(server.target, size=3, strategy=name)
    pool.wait_ready(timeout=10, min_ready=3)
    for _ in range(30):
        assert pool.get_channel().unary_unary(ECHO)(b"s", timeout=5) == b"s"


def test_custom_strategy_is_used(make_pool: Any, server: EchoServer) -> None:
    """An object with pick(channels) is a Strategy and decides every pick."""

    class Last:
        def pick(self, channels: Sequence[grpc_pool.PooledChannel]) -> grpc_pool.PooledChannel:
            return channels[-1]

    assert isinstance(Last(), grpc_pool.Strategy)
    pool = make_pool(server.target, size=3, strategy=Last())
    pool.wait_ready(timeout=10, min_ready=3)
    assert {id(pool.get_channel()) for _ in range(10)} == {id(pool._snapshot[-1])}


def test_failing_custom_strategy_raises_strategy_error(make_pool: Any, server: EchoServer) -> None:
    """A strategy that raises, or returns something that is not one of the channels it
    was given, reaches the caller as a StrategyError (a GrpcPoolError) naming the
    strategy, with the strategy's own exception as the cause; never a bare exception
    and never a channel the strategy did not pick."""

    class Broken:
        calls = 0

        def pick(self, channels: Sequence[grpc_pool.PooledChannel]) -> Any:
            Broken.calls += 1
            if Broken.calls % 2:
                raise RuntimeError("injected")
            return "not a channel"

        def __repr__(self) -> str:
            return "<Broken strategy>"

    pool = make_pool(server.target, size=2, strategy=Broken())
    pool.wait_ready(timeout=10, min_ready=2)
    with pytest.raises(grpc_pool.StrategyError) as raised:
        pool.get_channel()
    assert "<Broken strategy>" in str(raised.value) and "raised RuntimeError" in str(raised.value)
    assert isinstance(raised.value.__cause__, RuntimeError)
    assert str(raised.value.__cause__) == "injected"
    with pytest.raises(grpc_pool.StrategyError, match="not one of the 2 ready channels") as raised:
        pool.get_channel()
    assert "<Broken strategy>" in str(raised.value) and "of type str" in str(raised.value)
    assert isinstance(raised.value, grpc_pool.GrpcPoolError)


def test_strategy_returning_an_equal_stranger_is_refused(
    make_pool: Any, server: EchoServer
) -> None:
    """A result that compares equal to a channel but is not one of them is refused:
    the check is by identity."""

    class Impostor:
        def __eq__(self, other: object) -> bool:
            return True

        __hash__ = object.__hash__

    class Liar:
        def pick(self, channels: Sequence[grpc_pool.PooledChannel]) -> Any:
            return Impostor()

    pool = make_pool(server.target, size=1, strategy=Liar())
    pool.wait_ready(timeout=10)
    with pytest.raises(grpc_pool.StrategyError, match="of type Impostor"):
        pool.get_channel()
