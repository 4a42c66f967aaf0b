"""Chaos: 16 threads of unary and server-streaming RPCs through the pool for
about 10 s while the server restarts 3 times, the proxy resets and black-holes
connections, and the pool is resized. Bounded: well under 60 s."""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

import grpc

import grpc_pool
from grpc_pool.testing.echo import ECHO, ECHO_STREAM, EchoServer

from .faults import FaultProxy

RPC_TIMEOUT = 2.0
THREADS = 16


def test_chaos(make_pool: Any, server: EchoServer) -> None:
    """Every failure is UNAVAILABLE, DEADLINE_EXCEEDED, CANCELLED from the server's own
    abrupt stop, or NoChannelAvailable: never a ValueError or a CANCELLED "Channel
    closed!" (the pool closing a channel under a caller); no thread stuck; back to
    full size within the backoff bound after the last fault."""
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()
    pool_faults: list[BaseException] = []
    unexpected: list[BaseException] = []
    stop = threading.Event()

    with FaultProxy(server.target) as proxy:
        pool = make_pool(
            proxy.target,
            size=4,
            health_check_interval=0.5,
            health_check_timeout=0.5,
            keepalive_time=1.0,
            keepalive_timeout=1.0,
            connect_timeout=1.0,
            retire_grace=2 * RPC_TIMEOUT,  # longer than any RPC: drain never cancels one
        )
        pool.wait_ready(timeout=10, min_ready=4)

        def caller(n: int) -> None:
            streaming = n % 2 == 1
            while not stop.is_set():
                try:
                    channel = pool.get_channel(timeout=0.5)
                    if streaming:
                        got = list(channel.unary_stream(ECHO_STREAM)(b"5", timeout=RPC_TIMEOUT))
                        assert got == [b"5"] * 5
                    else:
                        assert channel.unary_unary(ECHO)(b"x", timeout=RPC_TIMEOUT) == b"x"
                    kind = "ok"
                except grpc_pool.NoChannelAvailable:
                    kind = "NoChannelAvailable"
                except grpc.RpcError as exc:
                    code, details = exc.code(), exc.details() or ""  # type: ignore[attr-defined]
                    kind = code.name
                    if code == grpc.StatusCode.CANCELLED and "Channel closed" in details:
                        pool_faults.append(exc)
                    elif code not in (
                        grpc.StatusCode.UNAVAILABLE,
                        grpc.StatusCode.DEADLINE_EXCEEDED,
                        grpc.StatusCode.CANCELLED,
                    ):
                        unexpected.append(exc)
                except ValueError as exc:  # RPC on a closed channel
                    kind = "ValueError"
                    pool_faults.append(exc)
                except BaseException as exc:
                    kind = type(exc).__name__
                    unexpected.append(exc)
                with lock:
                    outcomes[kind] += 1
                if kind != "ok":
                    stop.wait(0.02)

        threads = [
            threading.Thread(target=caller, args=(i,), name=f"chaos-{i}") for i in range(THREADS)
        ]
        started = time.monotonic()
        for t in threads:
            t.start()
        try:
            schedule = [
                (1.0, lambda: server.restart(down_for=0.3)),  # abrupt
                (2.5, proxy.reset_all),
                (3.5, lambda: pool.resize(6)),
                (4.5, proxy.blackhole),
                (6.0, proxy.pass_traffic),
                (7.0, lambda: server.restart(down_for=0.3, grace=0.2)),  # graceful
                (8.0, lambda: pool.resize(3)),
                (8.5, proxy.reset_all),
                (9.0, lambda: server.restart(down_for=0.3)),
                (9.5, lambda: pool.resize(4)),
            ]
            for at, fault in schedule:
                time.sleep(max(0.0, started + at - time.monotonic()))
                fault()
            last_fault = time.monotonic()
            config = pool.config
            bound = (
                config.backoff_max * (1 + config.backoff_jitter)
                + config.connect_timeout
                + config.health_check_timeout
            )
            pool.wait_ready(timeout=bound, min_ready=4)  # PoolTimeout fails the test
            recovered = time.monotonic() - last_fault
            time.sleep(0.5)  # some traffic on the recovered pool
        finally:
            stop.set()
            for t in threads:
                t.join(RPC_TIMEOUT + 5)
        stuck = [t.name for t in threads if t.is_alive()]
        stats = pool.stats()
        pool.close(grace=1.0)

    print(
        f"\nchaos: {dict(outcomes)} reconnects={stats.reconnects} connects={stats.connects} "
        f"disconnects={stats.disconnects} failures={stats.connect_failures} "
        f"recovered_in={recovered:.2f}s (bound {bound:.2f}s)"
    )
    assert stuck == []
    assert pool_faults == []
    assert unexpected == [], unexpected[:3]
    assert outcomes["ok"] > 100
    assert pool.status().state == "down"  # closed
