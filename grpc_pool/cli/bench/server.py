"""The bench server: a child process, so its work does not take the client's GIL.

Run as ``python -m grpc_pool.cli.bench serve WORKERS MAX_STREAMS`` (``__main__``).
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager
from typing import Any

import grpc

from ..._pool import Pool
from .core import BENCH_SERVICE, SERVER_WORKERS, STREAM_LIMIT


def _handlers() -> grpc.GenericRpcHandler:
    def echo(request: bytes, context: grpc.ServicerContext) -> bytes:
        return request

    def burst(request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        for _ in range(int(request)):
            yield request

    def hold(request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        yield request  # the client counts the stream open at this first message
        done = threading.Event()
        if context.add_callback(done.set):  # cancelled by the client or the server's stop
            done.wait(float(request))

    return grpc.method_handlers_generic_handler(
        BENCH_SERVICE,
        {
            "Echo": grpc.unary_unary_rpc_method_handler(echo),
            "Burst": grpc.unary_stream_rpc_method_handler(burst),
            "Hold": grpc.unary_stream_rpc_method_handler(hold),
        },
    )


def serve(workers: int, max_streams: int) -> None:
    """The child's main: serve on 127.0.0.1, print the port, stop when stdin closes."""
    executor = futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="bench-server")
    server = grpc.server(executor, options=[("grpc.max_concurrent_streams", max_streams)])
    server.add_generic_rpc_handlers((_handlers(),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(port, flush=True)
    sys.stdin.read()  # EOF: the parent closed it, or died
    server.stop(None).wait(5)
    executor.shutdown(wait=False)


@contextmanager
def bench_server(workers: int = SERVER_WORKERS, max_streams: int = STREAM_LIMIT) -> Iterator[str]:
    """The bench server in a child process; yields its target, stops it (bounded) after."""
    command = [sys.executable, "-m", "grpc_pool.cli.bench", "serve", str(workers), str(max_streams)]
    env = {**os.environ, "GRPC_VERBOSITY": "ERROR"}
    proc = subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True
    )
    try:
        yield f"127.0.0.1:{_read_port(proc, 30.0)}"
    finally:
        _stop_process(proc)


def _read_port(proc: subprocess.Popen[str], timeout: float) -> int:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    line = proc.stdout.readline() if ready else ""
    if not line.strip().isdigit():
        raise RuntimeError(f"bench server gave no port within {timeout:g}s (exit {proc.poll()})")
    return int(line)


def _stop_process(proc: subprocess.Popen[str]) -> None:
    for stdio in (proc.stdin, proc.stdout):
        if stdio is not None:
            stdio.close()  # closing stdin is the child's signal to stop
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@contextmanager
def started_pools(target: str, **pools: dict[str, Any]) -> Iterator[dict[str, Pool]]:
    """Pools by name (keyword: its options), all channels ready; closed after."""
    started: dict[str, Pool] = {}
    try:
        for name, options in pools.items():
            started[name] = Pool(target, **{"insecure": True, "name": f"bench-{name}", **options})
        for pool in started.values():
            pool.wait_ready(timeout=20, min_ready=pool.config.size)
        yield started
    finally:
        for pool in started.values():
            pool.close(grace=0)
