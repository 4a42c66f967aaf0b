"""9a-9f. Tail latency with one slow backend of four (issue 26): every client of the
issue in one run (the fast-only reference, raw grpcio ``round_robin``, the pool's
``round_robin``, ``power_of_two`` and ``peak_ewma``, hedging, ``peak_ewma`` with
hedging, hedging on the reference), one after another against the same backends
(grpc_pool.testing.deploy.tail; ``python -m grpc_pool bench --tail`` runs the same
rows). pytest-benchmark times the whole scenario once. With
``GRPC_POOL_CHART_DATA=DIR`` every latency goes to DIR/tail.json
(``benchmarks/chart.py tail``); the per-client table goes to stderr (``-s``)."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest

from grpc_pool.cli.bench import core
from grpc_pool.cli.bench.tail import tail_rows

from .conftest import SETTINGS

Report = Callable[[list[core.Row]], None]


@pytest.mark.timeout(900)  # eight clients of 12 s, one after another, twice: ~4 min
def test_one_slow_backend(benchmark: Any, report: Report) -> None:
    """Rows 9a-9f: the slow backend at 60 ms steady, then stalling 1.5 s per
    request for the middle third; 200 RPC/s open loop per client for 12 s (1 s
    with GRPC_POOL_BENCH_QUICK)."""
    folder = os.environ.get("GRPC_POOL_CHART_DATA")
    path = os.path.join(folder, "tail.json") if folder else None
    seconds = 12.0 if SETTINGS is core.FULL else 1.0
    rows = benchmark.pedantic(lambda: tail_rows(seconds, path), rounds=1, iterations=1)
    report(rows)
