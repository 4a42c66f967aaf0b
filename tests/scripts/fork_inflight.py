"""Fork while threads are mid-RPC through the pool; count children that crash.

Run by tests/test_fork.py (and by hand for the 100-fork figures in the docs).
The echo server runs in another process. Usage: fork_inflight.py TARGET FORKS THREADS
[OPTION...]: subscribe (the pools watch through grpcio's subscribe(), the fallback),
futures (the load's RPCs are futures, which grpcio's own threads complete),
register-early (the pool's fork handlers are installed before the process's first
channel, as a process whose first pool comes before any channel: the pool then has
grpcio install its own first), grpc-first (the same, but the pool's are installed
before grpcio's, so that with GRPC_ENABLE_FORK_SUPPORT grpcio's run first at each fork
and hold its threads). Prints one JSON line: forks, crashed (children killed by a
signal), failed (children that reported an error or exited non-zero; failed_exits:
their exit statuses), parent_errors, unquiesced (forks where a pool logged that it
was not quiesced in time), undrained (forks where RPCs were still in flight after the
drain; with futures the pool's fork_drain_timeout is 2 s, so that a reply late under a
loaded machine's scheduling is not counted, while futures held by grpcio's own fork
handler wait it out at every fork), grpc_first (whether grpcio's fork handlers were
installed after the pool's; None unless installed early), the load's slowest RPC (s)
and fork cost per fork (s).
"""

from __future__ import annotations

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
from grpc_pool._channel.pooled import CYGRPC
from grpc_pool._workers import watch
from grpc_pool.testing.echo import ECHO, SLOW


def main() -> int:
    target, forks, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    options = set(sys.argv[4:])
    if "subscribe" in options:
        watch.USE_PRIVATE_API = False
    grpc_first = None
    if options & {"register-early", "grpc-first"}:  # before the process's first channel
        _fork.GRPC_HANDLERS_FIRST = "grpc-first" not in options
        installed = _grpc_fork_handlers_installed()
        _fork.register_handlers()
        grpc_first = not installed and not _grpc_fork_handlers_installed()
    unquiesced = _Count("not quiesced before fork")
    undrained = _Count("still in flight")
    for handler in (unquiesced, undrained):
        logging.getLogger("grpc_pool._fork").addHandler(handler)
    # grpcio's own errors on stderr, a child's included: with GRPC_ENABLE_FORK_SUPPORT,
    # grpcio's child handler ends a child with exit status 64 (EX_USAGE) after logging
    # "Failed to shutdown gRPC Core after fork()" when its core is slow to shut down.
    grpc_errors = logging.StreamHandler(sys.stderr)
    grpc_errors.setLevel(logging.ERROR)
    logging.getLogger("grpc").addHandler(grpc_errors)
    # The child's echo is idempotent: a RetryPolicy sends it again on another channel
    # when a child's first connection breaks ("Socket closed", seen once in 20 forks
    # on grpcio 1.60 without GRPC_ENABLE_FORK_SUPPORT). Crashes stay crashes.
    retry = grpc_pool.RetryPolicy(methods=(ECHO,), codes=(grpc.StatusCode.UNAVAILABLE,))
    drain = 2.0 if "futures" in options else 0.5  # 0.5: the default
    pool = grpc_pool.Pool(
        target, size=4, insecure=True, name="inflight", retry=retry, fork_drain_timeout=drain
    )
    pool.wait_ready(timeout=10, min_ready=4)
    if grpc_first:  # the pool's channels made grpcio install its handlers
        grpc_first = _grpc_fork_handlers_installed()
    stop = threading.Event()
    parent_errors: list[str] = []
    slowest = [0.0]  # the load's slowest RPC, fork pauses included
    slow = pool.channel.unary_unary(SLOW)

    def load() -> None:  # RPCs in flight nonstop: short sleeps on the server side
        while not stop.is_set():
            began = time.monotonic()
            try:
                if "futures" in options:  # completed by grpcio's own threads
                    slow.future(b"0.002", timeout=10).result()
                else:
                    slow(b"0.002", timeout=10)
            except grpc.RpcError as error:
                parent_errors.append(f"{error.code()}")
            slowest[0] = max(slowest[0], time.monotonic() - began)

    workers = [threading.Thread(target=load, daemon=True) for _ in range(threads)]
    for worker in workers:
        worker.start()
    time.sleep(0.2)
    crashed = failed = 0
    exits: list[int] = []  # the failed children's exit statuses
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
            exits.append(os.WEXITSTATUS(status))
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
                "failed_exits": exits,
                "parent_errors": len(parent_errors),
                "unquiesced": unquiesced.seen,
                "undrained": undrained.seen,
                "grpc_first": grpc_first,
                "slowest_rpc": slowest[0],
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
    return bool(CYGRPC._fork_state.fork_handler_registered)


if __name__ == "__main__":
    sys.exit(main())
