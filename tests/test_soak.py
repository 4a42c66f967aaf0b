"""A one-minute soak (marker ``soak``; .ci/run runs it, a plain ``pytest`` skips it):
all four RPC kinds through pool.channel from 16 threads while the server restarts
(graceful and abrupt), the pool resizes, listeners come and go and health flips.
The server runs in a process of its own: this process's RSS, threads and fds are
the pool's (an in-process grpc server's memory grows with abrupt restarts under load)."""

from __future__ import annotations

import collections
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import pytest

import grpc_pool
from grpc_pool.testing import CHAT, COLLECT, ECHO, ECHO_STREAM

from .conftest import Recorder

SOAK_SECONDS = float(os.environ.get("GRPC_POOL_SOAK_SECONDS", "60"))
SERVER = Path(__file__).parent / "scripts" / "soak_server.py"
THREADS = 16
# What a caller may see while the server restarts or no channel is ready. CANCELLED
# is the server's abrupt stop ("CANCELLED"), never the pool's "Channel closed!".
EXPECTED_CODES = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.CANCELLED,
    grpc.StatusCode.DEADLINE_EXCEEDED,
}


def _rss_kb() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


class _ServerProcess:
    """The echo server in a child process, restarted on the same port."""

    def __init__(self) -> None:
        self.port = 0
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        env = {**os.environ, "GRPC_VERBOSITY": "ERROR"}
        self.proc = subprocess.Popen(
            [sys.executable, str(SERVER), str(self.port)],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()  # bounded: it prints or dies
        assert line.isdigit(), "soak server did not start"
        self.port = int(line)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def signal(self, number: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(number)

    def stop(self, graceful: bool) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        proc.send_signal(signal.SIGTERM if graceful else signal.SIGKILL)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        if proc.stdout is not None:
            proc.stdout.close()

    def restart(self, graceful: bool) -> None:
        self.stop(graceful)
        time.sleep(0.3)
        self.start()


@pytest.mark.soak
@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc (Linux)")
def test_soak_all_rpc_kinds_under_faults() -> None:
    """For SOAK_SECONDS: no error but the expected gRPC codes (never ValueError,
    AttributeError, a pool error other than NoChannelAvailable, or "Channel
    closed!"), every kind succeeds many times, the pool is whole again after the
    last fault, and after close no thread (checked by the fixture) or fd is left."""
    server = _ServerProcess()
    server.start()
    fds_before, rss_before = _fds(), _rss_kb()
    outcomes: collections.Counter[tuple[str, str]] = collections.Counter()
    unexpected: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()
    pool = grpc_pool.Pool(
        server.target,
        size=4,
        insecure=True,
        backoff_initial=0.05,
        backoff_max=0.5,
        retire_grace=2.0,
        health_check_interval=0.5,
        name="soak",
    )
    channel = pool.channel
    calls = {
        "unary": lambda: channel.unary_unary(ECHO)(b"u", timeout=5),
        "server_stream": lambda: list(channel.unary_stream(ECHO_STREAM)(b"3", timeout=5)),
        "client_stream": lambda: channel.stream_unary(COLLECT)(iter([b"a", b"b"]), timeout=5),
        "bidi": lambda: list(channel.stream_stream(CHAT)(iter([b"x", b"y"]), timeout=5)),
    }

    def load(seed: int) -> None:
        rng = random.Random(seed)
        kinds = list(calls)
        while not stop.is_set():
            kind = rng.choice(kinds)
            try:
                calls[kind]()
                outcome = "ok"
            except grpc.RpcError as error:
                code = error.code() if isinstance(error, grpc.Call) else None
                details = error.details() if isinstance(error, grpc.Call) else ""
                pool_error = isinstance(error, grpc_pool.GrpcPoolError)
                if (
                    code not in EXPECTED_CODES
                    or "Channel closed" in (details or "")
                    or (pool_error and not isinstance(error, grpc_pool.NoChannelAvailable))
                ):
                    with lock:
                        unexpected.append(f"{kind}: {type(error).__name__} {code} {details}")
                outcome = code.name if code is not None else "unknown"
                time.sleep(0.01)  # no busy loop while the server is down
            except Exception as error:
                with lock:
                    unexpected.append(f"{kind}: {type(error).__name__}: {error}")
                outcome = type(error).__name__
            with lock:
                outcomes[(kind, outcome)] += 1

    workers = [threading.Thread(target=load, args=(i,), name=f"soak-{i}") for i in range(THREADS)]
    rng = random.Random(7)
    faults: collections.Counter[str] = collections.Counter()
    listeners: list[Recorder] = []
    try:
        for worker in workers:
            worker.start()
        deadline = time.monotonic() + SOAK_SECONDS
        while time.monotonic() < deadline:
            time.sleep(rng.uniform(0.5, 2.0))
            fault = rng.choice(["restart", "abrupt", "resize", "listener", "health"])
            faults[fault] += 1
            if fault == "restart":
                server.restart(graceful=True)
            elif fault == "abrupt":
                server.restart(graceful=False)
            elif fault == "resize":
                pool.resize(rng.randint(2, 6))
            elif fault == "listener":
                if listeners and rng.random() < 0.5:
                    pool.remove_listener(listeners.pop())
                else:
                    listeners.append(Recorder())
                    pool.add_listener(listeners[-1])
            else:
                server.signal(signal.SIGUSR1)  # NOT_SERVING
                time.sleep(rng.uniform(0.5, 1.5))
                server.signal(signal.SIGUSR2)
        # After the last fault: whole again, and every kind works.
        size = pool.status().expected_size
        pool.wait_ready(timeout=20, min_ready=size)
        for kind, call in calls.items():
            call()
            outcomes[(kind, "after")] += 1
    finally:
        stop.set()
        for worker in workers:
            worker.join(15)
        pool.close(grace=2.0)
        server.stop(graceful=True)
    rss_after = _rss_kb()
    time.sleep(0.5)  # gRPC core releases the closed channels' sockets
    fds_after = _fds()
    summary = {
        "seconds": SOAK_SECONDS,
        "faults": dict(faults),
        "outcomes": {f"{k}/{o}": n for (k, o), n in sorted(outcomes.items())},
        "rss_kb": (rss_before, rss_after),
        "fds": (fds_before, fds_after),
        "threads_alive": [t.name for t in threading.enumerate() if t.name.startswith("soak-")],
    }
    print(f"soak: {summary}")
    assert not unexpected, unexpected[:10]
    for kind in calls:
        assert outcomes[(kind, "ok")] > 50, summary
    assert not any(worker.is_alive() for worker in workers)
    assert fds_after <= fds_before + 2, summary  # the pool's sockets and pipes are gone
