"""5. The slow paths: the writer publishing, closing, and recovery after a restart."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from grpc_pool.cli.bench import core, restart, writer

from .conftest import SETTINGS

Report = Callable[[list[core.Row]], None]


def test_register_to_published(benchmark: Any, echo_target: str, report: Report) -> None:
    """A worker's Register until a reader waiting in wait_ready() sees the channel,
    against a bare queue hand-off between threads. pytest-benchmark times it once."""
    rows = benchmark.pedantic(
        lambda: [writer.publish_row(echo_target, SETTINGS)], rounds=1, iterations=1
    )
    report(rows)


def test_writer_closing_a_channel(benchmark: Any, echo_target: str, report: Report) -> None:
    """A writer round trip while it closes a retired channel, against an idle writer."""
    rows = benchmark.pedantic(
        lambda: [writer.closing_row(echo_target, SETTINGS)], rounds=1, iterations=1
    )
    report(rows)


def test_restart_to_healthy(benchmark: Any, report: Report) -> None:
    """Server restart (own in-process server) until the pool is healthy, against a raw
    channel that kept reconnecting with gRPC's backoff. pytest-benchmark times it once."""
    rows = benchmark.pedantic(lambda: [restart.restart_row(SETTINGS)], rounds=1, iterations=1)
    report(rows)
