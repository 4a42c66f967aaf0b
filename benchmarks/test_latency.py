"""9a-9b. One slow backend of four (child processes): p99 and failed RPCs of
``peak_ewma`` against the fast-only reference and ``power_of_two``, with raw
round_robin and pool round_robin beside them, in the same run
(grpc_pool.cli.bench.latency, shared with ``python -m grpc_pool bench``). The
latency distributions go to stderr (``-s``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from grpc_pool.cli.bench import core, latency

from .conftest import SETTINGS

Report = Callable[[list[core.Row]], None]


@pytest.mark.benchmark(min_rounds=1)
def test_one_slow_backend(benchmark: Any, report: Report) -> None:
    """Steady p99 with a 60 ms backend, failed RPCs through a 1.5 s stall."""
    rows: list[core.Row] = []
    benchmark.pedantic(lambda: rows.extend(latency.latency_rows(SETTINGS)), rounds=1)
    report(rows)
