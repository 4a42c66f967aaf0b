"""16 threads doing get_channel() + a unary RPC while channels churn (server
restarts, resizes): no ValueError, no CANCELLED "Channel closed!", no deadlock."""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

import grpc

import grpc_pool
from grpc_pool.testing.echo import ECHO, EchoServer


def test_sixteen_threads_under_churn(make_pool: Any, server: EchoServer) -> None:
    """Every failure is the server's (UNAVAILABLE, DEADLINE_EXCEEDED, CANCELLED by its
    abrupt stop) or NoChannelAvailable; none is the pool closing a channel under a caller."""
    pool = make_pool(server.target, size=4, retire_grace=2.0)
    pool.wait_ready(timeout=10, min_ready=4)
    stop = threading.Event()
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()
    bad: list[BaseException] = []

    def caller() -> None:
        while not stop.is_set():
            try:
                channel = pool.get_channel(timeout=0.5)
                channel.unary_unary(ECHO)(b"x", timeout=2)
                kind = "ok"
            except grpc_pool.NoChannelAvailable:
                kind = "no_channel"
            except grpc.RpcError as exc:
                code, details = exc.code(), exc.details()  # type: ignore[attr-defined]
                kind = code.name
                if code == grpc.StatusCode.CANCELLED and "Channel closed" in (details or ""):
                    bad.append(exc)
            except ValueError as exc:  # "Cannot invoke RPC on closed channel!"
                bad.append(exc)
                kind = "ValueError"
            with lock:
                outcomes[kind] += 1

    threads = [threading.Thread(target=caller, name=f"caller-{i}") for i in range(16)]
    for t in threads:
        t.start()
    try:
        for step in range(3):
            time.sleep(0.4)
            server.stop(None if step % 2 == 0 else 0.2)
            time.sleep(0.2)
            server.start()
            pool.resize(2 + step * 2)
            pool.wait_ready(timeout=10, min_ready=1)
        pool.resize(4)
        pool.wait_ready(timeout=10, min_ready=4)
        time.sleep(0.3)
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    assert not [t.name for t in threads if t.is_alive()], "a caller thread is stuck"
    print("outcomes:", dict(outcomes))
    assert bad == []
    assert outcomes["ok"] > 0
    allowed = {"ok", "no_channel", "UNAVAILABLE", "DEADLINE_EXCEEDED", "CANCELLED"}
    assert set(outcomes) <= allowed, outcomes
    assert pool.status().state == "healthy"
