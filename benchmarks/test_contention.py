"""2. get_channel() from 1, 4, 16 and 64 threads: no convoy."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from grpc_pool.cli.bench import core, micro, server

from .conftest import SETTINGS

Report = Callable[[list[core.Row]], None]


def test_contention(benchmark: Any, echo_target: str, report: Report) -> None:
    """Aggregate per-call cost in steady state at 4, 16, 64 threads against 1 thread,
    and against a lock-protected pool at 16 threads (targets: at most 1.2x at 16;
    at least 2x faster than the lock). pytest-benchmark times the comparison once."""
    with server.started_pools(echo_target, p={"size": 4}) as pools:
        pool = pools["p"]
        rows = benchmark.pedantic(
            lambda: micro.contention_rows(pool, core.THREADS, SETTINGS),
            rounds=1,
            iterations=1,
        )
        report(rows)
