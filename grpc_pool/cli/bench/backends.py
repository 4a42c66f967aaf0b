"""Backends whose behaviour a test changes at any time, each in a child process.

For tests/test_outliers.py and tests/test_peak_ewma.py (a backend switched from
healthy to failing or slow and back, calls counted per backend). The benchmark
scenarios (rows 8a-8c, 9a-9f) run on ``grpc_pool.testing.deploy.tail`` instead.

A backend serves ``/grpc_pool.bench.Backend/Work`` (unary, raw bytes) as its mode
says, and takes a new mode at any time over ``Mode``. A mode is ``KIND[:MS]``:
KIND ``ok`` (answers), ``fail`` (INTERNAL at once), ``half`` (every other call
INTERNAL); MS: milliseconds each call takes before it answers. A ``bad`` request
is the caller's own error (INVALID_ARGUMENT) whatever the mode. ``Count`` answers
how many Work calls reached this backend.

Run as ``python -m grpc_pool.cli.bench backend MODE`` (``__main__``); it prints its
port and stops when its stdin closes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent import futures
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

import grpc

from .server import _read_port, _stop_process

__all__ = ["COUNT", "MODE", "WORK", "Backends", "backends", "serve_backend"]

SERVICE = "grpc_pool.bench.Backend"
WORK, MODE, COUNT = f"/{SERVICE}/Work", f"/{SERVICE}/Mode", f"/{SERVICE}/Count"


class _Behaviour:
    def __init__(self, mode: str) -> None:
        self.kind, self.delay = "ok", 0.0
        self.calls = 0
        self.lock = threading.Lock()
        self.set(mode)

    def set(self, mode: str) -> None:
        kind, _, ms = mode.partition(":")
        if kind not in ("ok", "fail", "half"):
            raise ValueError(f"unknown mode {mode!r}")
        self.kind, self.delay = kind, float(ms or 0) / 1000.0

    def work(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        with self.lock:
            self.calls += 1
            n = self.calls
        if request == b"bad":
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "bad request")
        kind, delay = self.kind, self.delay
        if delay:
            time.sleep(delay)
        if kind == "fail" or (kind == "half" and n % 2 == 0):
            context.abort(grpc.StatusCode.INTERNAL, "backend broken")
        return request


def serve_backend(mode: str) -> None:
    """The child's main: serve on 127.0.0.1, print the port, stop when stdin closes."""
    behaviour = _Behaviour(mode)

    def set_mode(request: bytes, context: grpc.ServicerContext) -> bytes:
        behaviour.set(request.decode())
        return b""

    def count(request: bytes, context: grpc.ServicerContext) -> bytes:
        return str(behaviour.calls).encode()

    handler = grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Work": grpc.unary_unary_rpc_method_handler(behaviour.work),
            "Mode": grpc.unary_unary_rpc_method_handler(set_mode),
            "Count": grpc.unary_unary_rpc_method_handler(count),
        },
    )
    executor = futures.ThreadPoolExecutor(max_workers=200, thread_name_prefix="backend")
    server = grpc.server(executor)
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(port, flush=True)
    sys.stdin.read()
    server.stop(None).wait(5)
    executor.shutdown(wait=False)


@dataclass
class Backends:
    """Running backends: their ``host:port`` and a control channel to each."""

    addresses: list[str]
    _control: list[grpc.Channel]

    def set(self, index: int, mode: str) -> None:
        send: Any = self._control[index].unary_unary(MODE)
        send(mode.encode(), timeout=10)

    def calls(self) -> list[int]:
        """Work calls each backend has seen so far."""
        counts: list[Any] = [c.unary_unary(COUNT) for c in self._control]
        return [int(count(b"", timeout=10)) for count in counts]

    @property
    def target(self) -> str:
        """One target naming them all (the pool spreads over it; grpcio balances it)."""
        return "ipv4:" + ",".join(self.addresses)


@contextmanager
def backends(modes: Sequence[str]) -> Iterator[Backends]:
    """One child process per mode; stopped (bounded) after."""
    command = [sys.executable, "-m", "grpc_pool.cli.bench", "backend"]
    env = {**os.environ, "GRPC_VERBOSITY": "ERROR"}
    with ExitStack() as stack:
        procs = []
        for mode in modes:
            proc = subprocess.Popen(
                [*command, mode], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True
            )
            stack.callback(_stop_process, proc)
            procs.append(proc)
        addresses = [f"127.0.0.1:{_read_port(p, 30.0)}" for p in procs]
        control = [grpc.insecure_channel(a) for a in addresses]
        for channel in control:
            stack.callback(channel.close)
        yield Backends(addresses, control)
