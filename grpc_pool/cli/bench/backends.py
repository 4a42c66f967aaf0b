"""Backends that misbehave on demand, each in a child process, and an open-loop load.

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
from collections.abc import Callable, Iterator, Sequence
from concurrent import futures
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

import grpc

from .server import _read_port, _stop_process

__all__ = ["COUNT", "MODE", "WORK", "Backends", "Load", "backends", "open_loop", "serve_backend"]

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


@dataclass
class Load:
    """What an open-loop run saw: each RPC's latency from its scheduled send (s),
    and the failed ones by status code."""

    latencies: list[float]
    failed: dict[str, int]

    @property
    def failures(self) -> int:
        return sum(self.failed.values())

    def quantile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def open_loop(
    call: Any,
    rate: float,
    seconds: float,
    timeout: float = 1.0,
    at: Sequence[tuple[float, Callable[[], None]]] = (),
) -> Load:
    """``rate`` RPCs a second for ``seconds``, each sent at its scheduled time with
    ``call.future`` (no waiting on the previous: open loop); ``at``: (second, action)
    run from the sending thread when their time comes (e.g. slow a backend down)."""
    latencies: list[float] = []
    failed: dict[str, int] = {}
    lock = threading.Lock()
    total = int(rate * seconds)
    done = threading.Semaphore(0)
    actions = sorted(at, key=lambda a: a[0])
    start = time.monotonic() + 0.05
    held: list[Any] = []

    def finished(scheduled: float, future: Any) -> None:
        latency = time.monotonic() - scheduled
        try:
            error = future.exception()
            code = None if error is None else getattr(error, "code", lambda: None)()
            name = None if error is None else getattr(code, "name", type(error).__name__)
            with lock:
                latencies.append(latency)
                if name is not None:
                    failed[name] = failed.get(name, 0) + 1
        finally:
            done.release()

    for i in range(total):
        scheduled = start + i / rate
        while actions and start + actions[0][0] <= scheduled:
            actions.pop(0)[1]()
        pause = scheduled - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        try:
            future = call.future(b"x", timeout=timeout)
        except Exception as exc:  # a pool refusing at once counts as a failure
            with lock:
                failed[type(exc).__name__] = failed.get(type(exc).__name__, 0) + 1
                latencies.append(time.monotonic() - scheduled)
            done.release()
            continue
        held.append(future)  # a dropped call is cancelled (grpcio's rule, and the pool's)
        future.add_done_callback(lambda f, s=scheduled: finished(s, f))
    deadline = time.monotonic() + timeout + 10.0
    for _ in range(total):
        if not done.acquire(timeout=max(0.0, deadline - time.monotonic())):
            raise RuntimeError(f"open loop: RPCs still pending {timeout + 10:g}s after the last")
    return Load(latencies, failed)
