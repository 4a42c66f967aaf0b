"""Row 5c: a server restart until the pool is healthy again."""

from __future__ import annotations

import statistics
import time

import grpc

from ..._pool import Pool
from ...testing.echo import EchoServer
from .core import POOL_SIZE, Row, Settings

DOWN_FOR = 0.5  # seconds the server stays away in the restart scenario
# A connection up for less than backoff_initial (1 s) counts as flapping and keeps
# backing off, by design: the pool is left stable that long before each restart.
STABLE_FOR = 1.2


def restart_row(settings: Settings) -> Row:
    """Server restart until the pool is healthy, against a raw channel that was kept
    trying to connect meanwhile; both follow the gRPC backoff defaults (1 s, x1.6)."""
    server = EchoServer().start()
    pool = Pool(server.target, size=POOL_SIZE, insecure=True, name="bench-restart")
    raw = grpc.insecure_channel(server.target)
    noticed: list[float] = []
    first: list[float] = []
    healthy: list[float] = []
    raw_ready: list[float] = []
    try:
        pool.wait_ready(timeout=20, min_ready=POOL_SIZE)
        grpc.channel_ready_future(raw).result(timeout=20)
        for _ in range(settings.restarts):
            time.sleep(STABLE_FOR)
            down_after, up, ready_at = _restart(server, pool, raw)
            noticed.append(down_after)
            first.append(pool_ready(pool, 1) - up)
            healthy.append(pool_ready(pool, POOL_SIZE) - up)
            raw_ready.append(_wait_value(ready_at, 30.0) - up)
    finally:
        pool.close(grace=0)
        raw.close()
        server.stop()
    pool_s, raw_s = statistics.median(healthy), statistics.median(raw_ready)
    return Row(
        "slow.restart",
        pool_s / raw_s,
        f"{pool_s:.2f} s (first channel {statistics.median(first):.2f} s;"
        f" stop noticed in {statistics.median(noticed):.2f} s)",
        f"raw {raw_s:.2f} s (server down {DOWN_FOR:g} s)",
    )


def pool_ready(pool: Pool, n: int) -> float:
    pool.wait_ready(timeout=30, min_ready=n)
    return time.perf_counter()


def _restart(server: EchoServer, pool: Pool, raw: grpc.Channel) -> tuple[float, float, list[float]]:
    """Stop the server until both clients noticed, start it again.

    Returns (seconds until the pool was down, restart time, [time the raw channel was READY]).
    """
    states: list[grpc.ChannelConnectivity] = []
    on_state = states.append
    raw.subscribe(on_state)
    try:
        stopped = time.perf_counter()
        server.stop()  # abrupt: in-flight RPCs cancelled, connections closed
        deadline = time.monotonic() + 10
        while pool.status().state != "down":
            if time.monotonic() > deadline:
                raise RuntimeError("the pool did not notice the server stop within 10s")
            time.sleep(0.002)
        down_after = time.perf_counter() - stopped
        while states[-1:] == [grpc.ChannelConnectivity.READY]:
            if time.monotonic() > deadline:
                raise RuntimeError("the raw channel did not notice the server stop within 10s")
            time.sleep(0.002)
    finally:
        raw.unsubscribe(on_state)
    ready_at: list[float] = []
    # Subscribed from now on, as a caller waiting for the channel would be: grpc keeps
    # reconnecting with its own backoff.
    future = grpc.channel_ready_future(raw)
    future.add_done_callback(lambda _: ready_at.append(time.perf_counter()))
    time.sleep(DOWN_FOR)
    server.start()
    return down_after, time.perf_counter(), ready_at


def _wait_value(values: list[float], timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while not values:
        if time.monotonic() > deadline:
            raise RuntimeError(f"no value within {timeout:g}s")
        time.sleep(0.005)
    return values[0]
