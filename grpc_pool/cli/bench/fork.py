"""Rows 5d and 5e: what a live pool adds to ``os.fork()``.

Before a fork, grpc_pool holds new RPCs, lets those in flight end
(``fork_drain_timeout``) and parks its threads outside gRPC. With the pool's
watcher (grpcio >= 1.80) that is a few thread wake-ups; on the ``subscribe()``
fallback grpcio's connectivity-poller threads must end, and they wake every
0.2 s (``grpc/_channel.py`` ``_poll_connectivity``), so there most of a fork's
extra cost is waiting for that tick. Rows 5i-5j (``idle.py``) compare a pool of
8 with a bare fork and with 8 raw channels, each in its own process.
"""

from __future__ import annotations

import os
import statistics
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import grpc

from ..._pool import Pool
from .core import B_ECHO, POOL_SIZE, Row, Settings, join_all

LOAD_THREADS = 16


def fork_rows(target: str, settings: Settings) -> list[Row]:
    """``os.fork()`` timed in the parent (the child exits at once) with a ready pool of
    4, idle and with 16 threads of RPCs through ``pool.channel``, against a bare
    ``os.fork()`` in the same process with no pool alive. Blocks of each, in turn."""
    if not hasattr(os, "fork"):
        raise RuntimeError("os.fork() is not available on this platform")
    bare: list[float] = []
    idle: list[float] = []
    busy: list[float] = []
    errors = 0
    for _ in range(settings.fork_rounds):
        bare += [timed_fork() for _ in range(settings.forks)]
        with Pool(target, size=POOL_SIZE, insecure=True, name="bench-fork") as pool:
            pool.wait_ready(timeout=20, min_ready=POOL_SIZE)
            idle += [timed_fork() for _ in range(settings.forks)]
            with _rpc_load(pool, LOAD_THREADS) as failed:
                busy += [timed_fork() for _ in range(settings.forks)]
            errors += len(failed)
    bare_s = statistics.median(bare)
    baseline = f"bare fork: median {_ms(bare_s)}, max {_ms(max(bare))}"
    rows = []
    for key, samples, note in (
        ("fork.idle", idle, ""),
        ("fork.busy", busy, f"; {errors} RPC errors"),
    ):
        median = statistics.median(samples)
        cell = f"median {_ms(median)}, max {_ms(max(samples))} ({len(samples)} forks{note})"
        rows.append(Row(key, median / bare_s, cell, baseline))
    return rows


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f} ms"


def timed_fork() -> float:
    """Seconds until ``os.fork()`` returns in the parent; the child exits at once."""
    with warnings.catch_warnings():
        # Python 3.12+ warns on fork in a threaded process; the child runs no Python.
        warnings.simplefilter("ignore", DeprecationWarning)
        start = time.perf_counter()
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        elapsed = time.perf_counter() - start
    os.waitpid(pid, 0)
    return elapsed


@contextmanager
def _rpc_load(pool: Pool, threads: int) -> Iterator[list[str]]:
    """``threads`` threads of unary echoes through ``pool.channel`` while the block
    runs; yields the (growing) list of errors they met, joins them (bounded) after."""
    echo = pool.channel.unary_unary(B_ECHO)
    stop = threading.Event()
    failed: list[str] = []
    started = threading.Barrier(threads + 1, timeout=30)

    def run() -> None:
        started.wait()
        while not stop.is_set():
            try:
                echo(b"x", timeout=10)
            except grpc.RpcError as error:
                failed.append(error.code().name)

    workers = [
        threading.Thread(target=run, name=f"bench-fork-load-{i}", daemon=True)
        for i in range(threads)
    ]
    for worker in workers:
        worker.start()
    try:
        started.wait()
        time.sleep(0.05)  # RPCs in flight by the first fork
        yield failed
    finally:
        stop.set()
        join_all(workers, 30)
