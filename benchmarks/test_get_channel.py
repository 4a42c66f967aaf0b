"""1. get_channel() on one thread, and pool.stub(): no RPC, an in-process server."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from grpc_pool.cli.bench import core, micro, server

from .conftest import SETTINGS

Report = Callable[[list[core.Row]], None]


# Rounds of at least 200 us: a single sub-microsecond call is below the timer's resolution.
MICRO = pytest.mark.benchmark(min_time=0.0002)


@MICRO
@pytest.mark.parametrize("strategy", core.STRATEGIES)
def test_get_channel(benchmark: Any, echo_target: str, report: Report, strategy: str) -> None:
    """get_channel() per strategy against a bare tuple read and a lock-protected pool
    (target: round_robin within 3x of the tuple read)."""
    with server.started_pools(echo_target, p={"size": 4, "strategy": strategy}) as pools:
        pool = pools["p"]
        report(micro.get_channel_rows(pool, strategy, SETTINGS))
        benchmark(pool.get_channel)


@MICRO
def test_stub(benchmark: Any, echo_target: str, report: Report) -> None:
    """pool.stub(Stub) (cached per channel) against Stub(pool.get_channel()) per call."""
    with server.started_pools(echo_target, p={"size": 4}) as pools:
        pool = pools["p"]
        report([micro.stub_row(pool, SETTINGS)])
        benchmark(pool.stub, core.EchoStub)


@MICRO
def test_pool_channel_pick(benchmark: Any, echo_target: str, report: Report) -> None:
    """What pool.channel adds before each RPC (pick a channel, look up its cached
    multi-callable) against a bare get_channel(); the added cost in ns."""
    with server.started_pools(echo_target, p={"size": 4}) as pools:
        pool = pools["p"]
        report([micro.channel_pick_row(pool, SETTINGS)])
        benchmark(pool.channel.unary_unary(core.B_ECHO)._pick, None, None)
