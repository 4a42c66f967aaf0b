"""Benchmarks: pytest-benchmark times the pool's path, and every test measures its
baseline in the same run (grpc_pool.cli.bench, shared with ``python -m grpc_pool bench``).

The ratios are printed as one table at the end of the run. A target that is not met
shows as MISS there; a test fails only on a real error.
GRPC_POOL_BENCH_QUICK=1 measures less (a smoke run; the numbers are noisier).
"""

from __future__ import annotations

import os

# Before grpc is imported: the restart scenario makes gRPC core log every GOAWAY.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from grpc_pool.cli.bench import core, server
from grpc_pool.testing.echo import EchoServer
from tests.conftest import no_leaked_threads  # noqa: F401  (the suite's autouse leak check)

SETTINGS = core.QUICK if os.environ.get("GRPC_POOL_BENCH_QUICK") else core.FULL
_rows: list[core.Row] = []


@pytest.fixture(scope="session")
def echo_target() -> Iterator[str]:
    """An in-process loopback server: enough where no RPC is made."""
    with EchoServer() as server:
        yield server.target


@pytest.fixture(scope="session")
def remote_target() -> Iterator[str]:
    """The bench server in a child process, so its work does not take our GIL."""
    with server.bench_server() as target:
        yield target


@pytest.fixture
def report(benchmark: Any) -> Callable[[list[core.Row]], None]:
    """Record rows: printed in the final table and saved in the benchmark's extra_info."""

    def record(rows: list[core.Row]) -> None:
        rows = [dataclasses.replace(r, quick=SETTINGS is core.QUICK) for r in rows]
        _rows.extend(rows)
        for row in rows:
            benchmark.extra_info[row.key] = {
                "ratio": row.ratio,
                "result": row.verdict,
                "pool": row.pool,
                "baseline": row.baseline,
            }
            print(" | ".join(row.cells()))  # shown with -s

    return record


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _rows:
        terminalreporter.section("grpc_pool: ratio = pool / baseline measured in the same run")
        terminalreporter.write_line(core.format_table(_rows))
