"""3. RPCs through the pool against a raw channel; the server is a child process."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from grpc_pool.cli.bench import core, rpc, server

from .conftest import SETTINGS

Report = Callable[[list[core.Row]], None]


def test_rpc_overhead(benchmark: Any, remote_target: str, report: Report) -> None:
    """Unary and server-streaming echo via pool.get_channel() (with in-flight counting)
    against a raw channel, wall and client CPU time (target: within 5%).
    pytest-benchmark times one unary echo through the pool."""
    report(rpc.rpc_rows(remote_target, SETTINGS))
    with server.started_pools(remote_target, p={"size": 4}) as pools:
        benchmark.pedantic(
            rpc.unary(pools["p"].get_channel), rounds=200, iterations=1, warmup_rounds=10
        )


def test_rpc_threads(benchmark: Any, remote_target: str, report: Report) -> None:
    """Unary echo from 8 threads: a pool of 4 connections against a pool of 1.
    pytest-benchmark times the whole comparison once."""
    rows = benchmark.pedantic(
        lambda: [rpc.rpc_threads_row(remote_target, SETTINGS)], rounds=1, iterations=1
    )
    report(rows)


def test_stub_built_once_on_pool_channel(
    benchmark: Any, remote_target: str, report: Report
) -> None:
    """A stub built once on pool.channel (each RPC picks a pooled channel) against
    the same stub built once on a raw channel, unary and server-streaming (target:
    within 5%). pytest-benchmark times one unary echo through pool.channel."""
    report(rpc.channel_rows(remote_target, SETTINGS))
    with server.started_pools(remote_target, p={"size": 4}) as pools:
        stub = core.EchoStub(pools["p"].channel)
        benchmark.pedantic(
            lambda: stub.Echo(b"x", timeout=rpc.RPC_TIMEOUT),
            rounds=200,
            iterations=1,
            warmup_rounds=10,
        )
