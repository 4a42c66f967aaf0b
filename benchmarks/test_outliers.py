"""8a-8c. One of four backends (child processes) answers every call INTERNAL: failed
RPCs of the pool's strategies against raw grpcio round_robin with its own A50
outlier detection, in the same run (grpc_pool.cli.bench.outliers, shared with
``python -m grpc_pool bench``). The per-client table goes to stderr (``-s``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from grpc_pool.cli.bench import core, outliers

from .conftest import SETTINGS

Report = Callable[[list[core.Row]], None]


@pytest.mark.benchmark(min_rounds=1)
def test_one_backend_failing_every_call(benchmark: Any, report: Report) -> None:
    """Failed RPCs with one backend answering INTERNAL: pool / raw round_robin + A50."""
    rows: list[core.Row] = []
    benchmark.pedantic(lambda: rows.extend(outliers.ejection_rows(SETTINGS)), rounds=1)
    report(rows)
