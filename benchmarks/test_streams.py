"""4. The stream limit: where a pool pays off in Python."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from grpc_pool.cli.bench import core, rpc

from .conftest import SETTINGS

Report = Callable[[list[core.Row]], None]


def test_stream_limit(benchmark: Any, remote_target: str, report: Report) -> None:
    """400 long-lived streams against a server allowing 100 per connection: time until
    all are open, and how many queued, through 1 channel, through 1 channel with A105
    connection scaling K=4 (grpcio >= 1.84) and through a pool of 4.
    pytest-benchmark times the whole comparison once."""
    rows = benchmark.pedantic(
        lambda: rpc.stream_rows(remote_target, SETTINGS), rounds=1, iterations=1
    )
    report(rows)
