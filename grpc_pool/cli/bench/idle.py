"""Rows 5g-5j: what an idle pool costs: CPU, OS threads and ``os.fork()`` time.

Three child processes, each with one side and nothing else: no channel at all
(``none``), 8 raw grpcio channels each on its own READY connection (``raw``),
and a ready pool of 8 (``pool``), all against the bench server (a fourth
process). They idle in the same window, side by side, so load from elsewhere
hits all alike; each reports its own process CPU time over the window (all its
threads, gRPC's included) and its OS threads. Then each times ``os.fork()``
(one child at a time). Run as ``python -m grpc_pool.cli.bench idle KIND TARGET
WINDOW FORKS`` (``__main__``).
"""

from __future__ import annotations

import json
import os
import select
import statistics
import subprocess
import sys
import threading
import time
from typing import Any

import grpc

from .core import Row, Settings
from .fork import timed_fork
from .server import _stop_process

KINDS = ("none", "raw", "pool")
IDLE_SIZE = 8
SETTLE = 1.0  # seconds after READY before the window: lazily started threads are up


def os_threads() -> int:
    """This process's OS threads (Linux: /proc; elsewhere the Python threads)."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return threading.active_count()


def serve_idle(kind: str, target: str, window: float, forks: int) -> None:
    """The child's main: set up ``kind``, say ready, idle for ``window`` on "go" and
    print {cpu, threads}, time ``forks`` forks on "fork" and print them, end on EOF."""
    closers: list[Any] = []
    if kind == "raw":
        for i in range(IDLE_SIZE):  # own connections, as the pool's channels have
            options = [("grpc.use_local_subchannel_pool", 1), ("bench.channel", i)]
            channel = grpc.insecure_channel(target, options=options)
            grpc.channel_ready_future(channel).result(timeout=20)
            closers.append(channel.close)
    elif kind == "pool":
        from ..._pool import Pool

        pool = Pool(target, size=IDLE_SIZE, insecure=True, name="bench-idle")
        pool.wait_ready(timeout=20, min_ready=IDLE_SIZE)
        closers.append(lambda: pool.close(grace=0))
    time.sleep(SETTLE)
    print("ready", flush=True)
    sys.stdin.readline()
    cpu, wall = time.process_time(), time.monotonic()
    time.sleep(window)
    cpu, wall = time.process_time() - cpu, time.monotonic() - wall
    print(json.dumps({"cpu": cpu / wall, "threads": os_threads()}), flush=True)
    sys.stdin.readline()
    print(json.dumps({"forks": [timed_fork() for _ in range(forks)]}), flush=True)
    sys.stdin.read()
    for close in closers:
        close()


def idle_rows(target: str, settings: Settings) -> list[Row]:
    """The three children side by side: CPU and threads over one idle window, then
    their forks one child at a time."""
    window, forks = settings.idle_window, settings.forks * settings.fork_rounds
    env = {**os.environ, "GRPC_VERBOSITY": "ERROR"}
    procs: dict[str, subprocess.Popen[str]] = {}
    try:
        for kind in KINDS:
            command = [sys.executable, "-m", "grpc_pool.cli.bench", "idle", kind, target]
            procs[kind] = subprocess.Popen(
                [*command, repr(window), str(forks)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env=env,
                text=True,
            )
        for kind, proc in procs.items():
            if _line(proc, 60.0) != "ready":
                raise RuntimeError(f"idle child {kind} did not get ready (exit {proc.poll()})")
        for proc in procs.values():
            _send(proc, "go")
        idle = {kind: json.loads(_line(proc, window + 30.0)) for kind, proc in procs.items()}
        timed: dict[str, list[float]] = {}
        for kind, proc in procs.items():
            _send(proc, "fork")
            timed[kind] = json.loads(_line(proc, 60.0))["forks"]
    finally:
        for proc in procs.values():
            _stop_process(proc)
    return _rows(idle, timed, window)


def _rows(idle: dict[str, Any], timed: dict[str, list[float]], window: float) -> list[Row]:
    pool, raw, none = idle["pool"], idle["raw"], idle["none"]
    fork = {kind: statistics.median(samples) for kind, samples in timed.items()}
    extra = pool["threads"] - raw["threads"]
    return [
        Row(
            "idle.cpu",
            pool["cpu"] / raw["cpu"] if raw["cpu"] else None,
            f"{pool['cpu']:.3%} of a core (goal <= 0.1%)",
            f"raw {raw['cpu']:.3%}; no channel {none['cpu']:.3%} ({window:g} s window)",
        ),
        Row(
            "idle.threads",
            pool["threads"] / raw["threads"],
            f"{pool['threads']} (+{extra}; goal <= +{IDLE_SIZE + 4})",
            f"raw {raw['threads']}; no channel {none['threads']}",
        ),
        Row(
            "fork.pool8",
            fork["pool"] / fork["none"],
            f"median {_ms(fork['pool'])}, max {_ms(max(timed['pool']))}",
            f"bare fork: median {_ms(fork['none'])} ({len(timed['pool'])} forks each)",
            ("<=", 10.0),
        ),
        Row(
            "fork.raw8",
            fork["pool"] / fork["raw"],
            f"median {_ms(fork['pool'])}",
            f"8 raw channels: median {_ms(fork['raw'])}, max {_ms(max(timed['raw']))}",
        ),
    ]


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f} ms"


def _send(proc: subprocess.Popen[str], line: str) -> None:
    assert proc.stdin is not None
    proc.stdin.write(line + "\n")
    proc.stdin.flush()


def _line(proc: subprocess.Popen[str], timeout: float) -> str:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    return proc.stdout.readline().strip() if ready else ""
