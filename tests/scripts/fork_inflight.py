"""Fork while threads are mid-RPC through the pool; count children that crash.

Run by tests/test_fork.py (and by hand for the 100-fork figures in the docs).
The echo server runs in another process. Usage: fork_inflight.py TARGET FORKS THREADS
[poll|subscribe [grpc-first]] (subscribe: the pools watch through grpcio's subscribe(),
the fallback; grpc-first: the pool's fork handlers are installed before grpcio's, so
that with GRPC_ENABLE_FORK_SUPPORT grpcio's run first at each fork and hold its
pollers). Prints one JSON line: forks, crashed (children killed by a signal), failed
(children that reported an error), parent_errors, unquiesced (forks where a pool
logged that it was not quiesced in time), grpc_first (whether grpcio's fork handlers
were installed after the pool's), fork cost per fork (s).
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import signal
import sys
import threading
import time

import grpc

import grpc_pool
from grpc_pool import _fork
from grpc_pool._workers import watch
from grpc_pool.testing.echo import ECHO, SLOW


def main() -> int:
    target, forks, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    if sys.argv[4:5] == ["subscribe"]:
        watch.USE_PRIVATE_API = False
    grpc_first = None
    if sys.argv[5:6] == ["grpc-first"]:  # before any channel: grpcio installs its own later
        grpc_first = not _grpc_fork_handlers_installed()
        _fork.register_handlers()
    unquiesced = _Count("not quiesced before fork")
    logging.getLogger("grpc_pool._fork").addHandler(unquiesced)
    # The child's echo is idempotent: a RetryPolicy sends it again on another channel
    # when a child's first connection breaks ("Socket closed", seen once in 20 forks
    # on grpcio 1.60 without GRPC_ENABLE_FORK_SUPPORT). Crashes stay crashes.
    retry = grpc_pool.RetryPolicy(methods=(ECHO,), codes=(grpc.StatusCode.UNAVAILABLE,))
    pool = grpc_pool.Pool(target, size=4, insecure=True, name="inflight", retry=retry)
    pool.wait_ready(timeout=10, min_ready=4)
    if grpc_first is not None:  # the pool's channels made grpcio install its handlers
        grpc_first = grpc_first and _grpc_fork_handlers_installed()
    stop = threading.Event()
    parent_errors: list[str] = []
    slow = pool.channel.unary_unary(SLOW)

    def load() -> None:  # RPCs in flight nonstop: short sleeps on the server side
        while not stop.is_set():
            try:
                slow(b"0.002", timeout=10)
            except grpc.RpcError as error:
                parent_errors.append(f"{error.code()}")

    workers = [threading.Thread(target=load, daemon=True) for _ in range(threads)]
    for worker in workers:
        worker.start()
    time.sleep(0.2)
    crashed = failed = 0
    costs: list[float] = []
    for _ in range(forks):
        started = time.monotonic()
        pid = os.fork()
        if pid == 0:
            signal.alarm(30)
            try:
                echo = pool.channel.unary_unary(ECHO)  # a failed first attempt is retried
                ok = echo(b"child", timeout=10, wait_for_ready=True) == b"child"
            except BaseException as error:
                print(f"child: {type(error).__name__}: {error}", file=sys.stderr, flush=True)
                ok = False
            os._exit(0 if ok else 3)
        costs.append(time.monotonic() - started)
        _, status = os.waitpid(pid, 0)
        if os.WIFSIGNALED(status):
            crashed += 1
        elif os.WEXITSTATUS(status) != 0:
            failed += 1
    stop.set()
    for worker in workers:
        worker.join(15)
    pool.close()
    costs.sort()
    print(
        json.dumps(
            {
                "forks": forks,
                "crashed": crashed,
                "failed": failed,
                "parent_errors": len(parent_errors),
                "unquiesced": unquiesced.seen,
                "grpc_first": grpc_first,
                "fork_cost_median": costs[len(costs) // 2],
                "fork_cost_max": costs[-1],
            }
        )
    )
    return 0


class _Count(logging.Handler):
    """Counts the records whose message contains ``text``."""

    def __init__(self, text: str) -> None:
        super().__init__(logging.WARNING)
        self.text, self.seen = text, 0

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.seen += 1


def _grpc_fork_handlers_installed() -> bool:
    """Whether grpcio has installed its fork handlers (it does with the process's first
    channel, when GRPC_ENABLE_FORK_SUPPORT is set): grpcio's private fork state."""
    cygrpc = importlib.import_module("grpc._cython.cygrpc")
    return bool(cygrpc._fork_state.fork_handler_registered)


if __name__ == "__main__":
    sys.exit(main())
