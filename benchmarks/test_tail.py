"""7. Tail latency with one slow backend of four (issue 26): hedging beside raw
grpcio ``round_robin``, the pool without hedging and the fast-only reference, all
clients one after another against the same backends (grpc_pool.testing.deploy.tail;
``python -m grpc_pool bench --tail`` runs the same rows). pytest-benchmark times
the whole scenario once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from grpc_pool.cli.bench import core
from grpc_pool.cli.bench.tail import tail_rows

Report = Callable[[list[core.Row]], None]


def test_one_slow_backend(benchmark: Any, report: Report) -> None:
    """Rows 9c-9e: the slow backend at 60 ms steady, then stalling 1.5 s per
    request for the middle third; 200 RPC/s open loop per client for 12 s (the
    CLI's ``bench --tail`` runs 6 s per client)."""
    rows = benchmark.pedantic(lambda: tail_rows(12.0), rounds=1, iterations=1)
    report(rows)
