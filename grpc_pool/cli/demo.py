"""``python -m grpc_pool demo``: a pool under load while its server restarts."""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter
from typing import TextIO

import grpc

from .._base.errors import NoChannelAvailable
from .._pool import Pool
from ..testing.echo import ECHO, EchoServer


def run_demo(
    seconds: float = 8.0, threads: int = 4, size: int = 4, out: TextIO = sys.stdout
) -> int:
    """Run the demo; return the exit code (0 when the pool recovered and served)."""
    server = EchoServer().start()
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()
    stop = threading.Event()
    pool = Pool(
        server.target,
        size=size,
        insecure=True,
        name="demo",
        backoff_initial=0.2,
        backoff_max=1.0,
        connect_timeout=5.0,
        retire_grace=1.0,
    )

    def load() -> None:
        echo_payload = b"hello"
        while not stop.is_set():
            try:
                channel = pool.get_channel(timeout=0.5)
                channel.unary_unary(ECHO)(echo_payload, timeout=1.0)
                kind = "ok"
            except NoChannelAvailable:
                kind = "no channel"
            except grpc.RpcError as exc:
                kind = exc.code().name
            with lock:
                outcomes[kind] += 1
            if kind != "ok":
                stop.wait(0.05)

    recovered: list[float] = []

    def watch_recovery() -> None:  # woken by the writer's publishes, no sampling delay
        try:
            pool.wait_ready(timeout=10.0, min_ready=size)
            recovered.append(time.monotonic())
        except Exception:  # reported below as "did not recover"
            pass

    recovery = threading.Thread(target=watch_recovery, name="demo-recovery")
    live = out.isatty()
    started = time.monotonic()
    recovered_after: float | None = None
    try:
        pool.wait_ready(timeout=10.0, min_ready=size)
        print(f"server on {server.target}; {pool!r}; {threads} threads for {seconds:g}s", file=out)
        workers = [threading.Thread(target=load, name=f"demo-load-{i}") for i in range(threads)]
        for w in workers:
            w.start()
        restart_at = started + seconds / 2
        restarted = False
        back_up_at = 0.0
        while (now := time.monotonic()) < started + seconds:
            if not restarted and now >= restart_at:
                print(
                    "\n-- stopping the server for 1 s --"
                    if live
                    else "-- stopping the server for 1 s --",
                    file=out,
                )
                server.stop()
                _wait_state(pool, "down", 5.0)
                _status_line(pool, outcomes, lock, time.monotonic() - started, out, live)
                time.sleep(1.0)
                server.start()
                back_up_at = time.monotonic()
                restarted = True
                recovery.start()
                print(
                    "\n-- server back on the same port --"
                    if live
                    else "-- server back on the same port --",
                    file=out,
                )
            # Read the clock again: the outage above took seconds since `now`.
            _status_line(pool, outcomes, lock, time.monotonic() - started, out, live)
            time.sleep(0.25 if live else 1.0)
        stop.set()
        for w in workers:
            w.join(5.0)
        if restarted:
            recovery.join(12.0)
            if recovered:
                recovered_after = recovered[0] - back_up_at
        stats = pool.stats()
    finally:
        stop.set()
        pool.close(grace=2.0)
        server.stop()
    failed = sum(n for k, n in outcomes.items() if k != "ok")
    print("" if not live else "\n", end="", file=out)
    print("summary:", file=out)
    print(
        f"  RPCs ok: {outcomes['ok']}  failed: {failed}  "
        + " ".join(f"{k}={n}" for k, n in sorted(outcomes.items()) if k != "ok"),
        file=out,
    )
    print(f"  reconnects: {stats.reconnects}", file=out)
    # Each slot is its own TCP connection, replaced when lost: the server counts
    # distinct client ip:port pairs (one grpcio channel per target would show 1, then 2).
    peers = len(server.peers)
    why = (
        f"{size} slots x 2: one connection each before the restart, a new one after"
        if peers == 2 * size
        else "distinct client ip:port; each slot has its own, replaced when lost"
    )
    print(f"  TCP connections the server saw: {peers} ({why})", file=out)
    if recovered_after is None:
        print("  pool did NOT recover to healthy", file=out)
        return 1
    print(f"  time to recover (server up -> pool healthy): {recovered_after:.2f}s", file=out)
    return 0 if outcomes["ok"] else 1


def _wait_state(pool: Pool, state: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pool.status().state == state:
            return True
        time.sleep(0.02)
    return False


def _status_line(
    pool: Pool, outcomes: Counter[str], lock: threading.Lock, t: float, out: TextIO, live: bool
) -> None:
    status = pool.status()
    with lock:
        ok = outcomes["ok"]
        failed = sum(n for k, n in outcomes.items() if k != "ok")
    line = (
        f"t={t:5.1f}s  {status.state:<8} ready={status.current_size}/{status.expected_size}"
        f"  ok={ok} failed={failed}"
    )
    print(f"\r{line}   " if live else line, end="" if live else "\n", file=out, flush=True)
