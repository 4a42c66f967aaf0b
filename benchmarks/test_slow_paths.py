"""5. The slow paths: the writer publishing and retiring, recovery after a restart,
what a live pool adds to os.fork(), and what an idle pool costs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from grpc_pool.cli.bench import core, fork, idle, restart, writer

from .conftest import SETTINGS

Report = Callable[[list[core.Row]], None]


def test_register_to_published(benchmark: Any, echo_target: str, report: Report) -> None:
    """A worker's Register until a reader waiting in wait_ready() sees the channel,
    against a bare queue hand-off between threads. pytest-benchmark times it once."""
    rows = benchmark.pedantic(
        lambda: [writer.publish_row(echo_target, SETTINGS)], rounds=1, iterations=1
    )
    report(rows)


def test_writer_retiring_100_channels(benchmark: Any, remote_target: str, report: Report) -> None:
    """Writer round trips while it retires and closes 100 channels at once (a pool of
    101 resized to 1, grace 0.5 s), against as many round trips to the idle writer.
    pytest-benchmark times the whole scenario once."""
    rows = benchmark.pedantic(
        lambda: [writer.closing_row(remote_target, SETTINGS)], rounds=1, iterations=1
    )
    report(rows)


def test_restart_to_healthy(benchmark: Any, report: Report) -> None:
    """Server restart (own in-process server) until the pool is healthy, against a raw
    channel that kept reconnecting with gRPC's backoff. pytest-benchmark times it once."""
    rows = benchmark.pedantic(lambda: [restart.restart_row(SETTINGS)], rounds=1, iterations=1)
    report(rows)


def test_fork_with_a_live_pool(benchmark: Any, remote_target: str, report: Report) -> None:
    """os.fork() (timed in the parent; the child exits at once) with a ready pool of 4,
    idle and with 16 threads of RPCs in flight, against a bare os.fork() in the same
    process. pytest-benchmark times the whole scenario once."""
    rows = benchmark.pedantic(
        lambda: fork.fork_rows(remote_target, SETTINGS), rounds=1, iterations=1
    )
    report(rows)


def test_idle_pool_cpu_threads_and_fork(benchmark: Any, remote_target: str, report: Report) -> None:
    """Idle CPU (process CPU time over a window), OS threads and os.fork() of a ready
    pool of 8, against 8 raw channels and a process with no channel: each in its own
    child process, idling side by side. pytest-benchmark times the whole scenario once."""
    rows = benchmark.pedantic(
        lambda: idle.idle_rows(remote_target, SETTINGS), rounds=1, iterations=1
    )
    report(rows)
