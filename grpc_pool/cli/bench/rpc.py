"""Rows 3 and 4: RPCs through the pool against a raw channel; the stream limit."""

from __future__ import annotations

import json
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import grpc

from ..._config.scaling import grpcio_has_a105
from .core import (
    B_BURST,
    B_ECHO,
    B_HOLD,
    BURST,
    POOL_SIZE,
    STREAMS,
    EchoStub,
    Row,
    Settings,
    interleave,
    join_all,
    median_row,
    per_call,
    steady_per_call,
    us,
)
from .server import started_pools

# -- 3. RPC overhead -----------------------------------------------------------------
RPC_TIMEOUT = 10.0


def unary(get: Callable[[], Any]) -> Callable[[], object]:
    """One unary echo on ``get()``'s channel (multi-callable built per call, like a stub)."""

    def call() -> object:
        return get().unary_unary(B_ECHO)(b"x", timeout=RPC_TIMEOUT)

    return call


def streaming(get: Callable[[], Any]) -> Callable[[], object]:
    """One server-streaming echo on ``get()``'s channel, read to the end."""

    def call() -> object:
        return sum(1 for _ in get().unary_stream(B_BURST)(BURST, timeout=RPC_TIMEOUT))

    return call


def rpc_rows(target: str, settings: Settings) -> list[Row]:
    """Unary and streaming RPCs via the pool against a raw channel to the same server."""
    raw = grpc.insecure_channel(target)
    n = settings.rpc_calls
    try:
        grpc.channel_ready_future(raw).result(timeout=20)
        with started_pools(
            target,
            tracked={"size": POOL_SIZE},
            untracked={"size": POOL_SIZE, "track_in_flight": False},
        ) as pools:
            tracked, untracked = pools["tracked"].get_channel, pools["untracked"].get_channel
            res = interleave(
                {
                    "raw": partial(per_call, unary(lambda: raw), n),
                    "pool": partial(per_call, unary(tracked), n),
                    "untracked": partial(per_call, unary(untracked), n),
                    "raw_cpu": partial(per_call, unary(lambda: raw), n, time.process_time),
                    "pool_cpu": partial(per_call, unary(tracked), n, time.process_time),
                    # a 10-message stream takes ~4 unary RPCs: fewer per block
                    "raw_stream": partial(per_call, streaming(lambda: raw), max(2, n // 3)),
                    "pool_stream": partial(per_call, streaming(tracked), max(2, n // 3)),
                },
                settings.rpc_rounds,
            )
    finally:
        raw.close()
    # The ratio of the two medians shown (one statistic for the ratio and its columns).
    within_5 = ("<=", 1.05)

    def row(key: str, subject: str, baseline: str, target: tuple[str, float] | None) -> Row:
        return median_row(key, res[subject], res[baseline], us, "raw ", target)

    return [
        row("rpc.unary", "pool", "raw", within_5),
        row("rpc.unary_cpu", "pool_cpu", "raw_cpu", None),
        row("rpc.unary_untracked", "untracked", "raw", None),
        row("rpc.stream", "pool_stream", "raw_stream", within_5),
    ]


def channel_rows(target: str, settings: Settings) -> list[Row]:
    """A stub built once on ``pool.channel`` (every RPC picks a pooled channel)
    against the same stub built once on a raw channel to the same server."""
    raw = grpc.insecure_channel(target)
    n = settings.rpc_calls
    try:
        grpc.channel_ready_future(raw).result(timeout=20)
        with started_pools(target, pool={"size": POOL_SIZE}) as pools:
            on_pool, on_raw = EchoStub(pools["pool"].channel), EchoStub(raw)

            def unary_on(stub: EchoStub) -> Callable[[], object]:
                return lambda: stub.Echo(b"x", timeout=RPC_TIMEOUT)

            def stream_on(stub: EchoStub) -> Callable[[], object]:
                return lambda: sum(1 for _ in stub.Burst(BURST, timeout=RPC_TIMEOUT))

            res = interleave(
                {
                    "raw": partial(per_call, unary_on(on_raw), n),
                    "pool": partial(per_call, unary_on(on_pool), n),
                    "raw_stream": partial(per_call, stream_on(on_raw), max(2, n // 3)),
                    "pool_stream": partial(per_call, stream_on(on_pool), max(2, n // 3)),
                },
                settings.rpc_rounds,
            )
    finally:
        raw.close()
    return [
        median_row(key, res[subject], res[base], us, "raw ", ("<=", 1.05))
        for key, subject, base in (
            ("channel.unary", "pool", "raw"),
            ("channel.stream", "pool_stream", "raw_stream"),
        )
    ]


def rpc_threads_row(target: str, settings: Settings) -> Row:
    """8 threads of unary RPCs: does a pool of 4 connections beat one connection?"""
    window = settings.rpc_window
    with started_pools(target, four={"size": 4}, one={"size": 1}) as pools:
        res = interleave(
            {
                name: partial(steady_per_call, unary(pool.get_channel), 8, window, chunk=1)
                for name, pool in pools.items()
            },
            max(3, settings.rpc_rounds // 8) | 1,  # odd: each median is one measured round
        )
    # The ratio of the two medians shown, not a median of per-round ratios: with this
    # much variance between rounds those two disagree, and the row must add up.
    four, one = statistics.median(res["four"]), statistics.median(res["one"])
    return Row("rpc.threads", four / one, us(four), f"pool of 1 {us(one)}")


# -- 4. the stream limit -------------------------------------------------------------
@dataclass(frozen=True)
class StreamRun:
    """Seconds from the start to each stream's first message; what failed; how many queued."""

    opened: list[float]
    failed: dict[str, int]
    queued: int  # waited for another stream to end: a free slot opens in milliseconds

    @property
    def all_open(self) -> float:
        return max(self.opened, default=float("nan"))

    def complete(self, n: int) -> bool:
        """Every one of the ``n`` streams opened and none failed."""
        return len(self.opened) == n and not self.failed

    def describe(self, n: int) -> str:
        opened = "all" if len(self.opened) == n else f"{len(self.opened)}/{n}"
        failed = "".join(f", {k} {v}" for k, v in sorted(self.failed.items()))
        return f"{opened} open after {self.all_open:.2f} s, {self.queued} queued{failed}"


def open_streams(get: Callable[[], Any], n: int, hold: float) -> StreamRun:
    """Start ``n`` streams the server holds open ``hold`` s each; time each first message."""
    deadline = hold * 4 + 20  # bounds every stream, a queued one too
    opened: list[float] = []
    waited: list[float] = []
    failed: dict[str, int] = {}
    lock = threading.Lock()
    calls: list[Any] = []
    threads: list[threading.Thread] = []
    start = time.perf_counter()

    def consume(call: Any, begun: float) -> None:  # a thread per stream: next() blocks
        try:
            next(call)
            now = time.perf_counter()
            with lock:
                opened.append(now - start)
                waited.append(now - begun)
            for _ in call:
                pass
        except (grpc.RpcError, StopIteration) as exc:
            kind = exc.code().name if isinstance(exc, grpc.RpcError) else "no message"
            with lock:
                failed[kind] = failed.get(kind, 0) + 1

    try:
        for i in range(n):
            begun = time.perf_counter()
            calls.append(get().unary_stream(B_HOLD)(str(hold).encode(), timeout=deadline))
            thread = threading.Thread(
                target=consume, args=(calls[-1], begun), name=f"bench-stream-{i}"
            )
            threads.append(thread)
            thread.start()
        join_all(threads, deadline + 5)
    finally:
        for call in calls:
            call.cancel()  # no-op for finished streams; ends the rest on an error above
        join_all(threads, 10)
    # Queued: no slot until a stream ended, at least hold minus the time to start them all.
    return StreamRun(sorted(opened), failed, sum(1 for w in waited if w > hold / 4))


def a105_options(k: int) -> list[tuple[str, Any]]:
    """One raw channel with grpcio's own connection scaling (gRFC A105, grpcio >= 1.84):
    up to ``k`` connections to the address, its own subchannel pool."""
    body = {"connectionScaling": {"maxConnectionsPerSubchannel": k}}
    return [("grpc.service_config", json.dumps(body)), ("grpc.use_local_subchannel_pool", 1)]


def _raw_streams(target: str, settings: Settings, options: list[tuple[str, Any]]) -> StreamRun:
    raw = grpc.insecure_channel(target, options=options)
    try:
        grpc.channel_ready_future(raw).result(timeout=20)
        return open_streams(lambda: raw, STREAMS, settings.hold)
    finally:
        raw.close()


def stream_ratio(pooled: StreamRun, base: StreamRun, key: str, prefix: str = "") -> Row:
    """pool / baseline time until all open; no ratio when either side failed streams (the
    failure is the result: on a slow machine queued streams can run out of deadline)."""
    ratio: float | None = pooled.all_open / base.all_open
    baseline = prefix + base.describe(STREAMS)
    if not base.complete(STREAMS):
        ratio, baseline = None, f"FAILED: {baseline}"
    pool_cell = pooled.describe(STREAMS)
    if not pooled.complete(STREAMS):
        ratio, pool_cell = None, f"FAILED: {pool_cell}"
    return Row(key, ratio, pool_cell, baseline)


def stream_rows(target: str, settings: Settings) -> list[Row]:
    """400 long-lived streams against a per-connection limit of 100: a pool of 4 against
    1 channel, and against 1 channel with A105 connection scaling K=4 (grpcio >= 1.84)."""
    single = _raw_streams(target, settings, [])
    scaled = _raw_streams(target, settings, a105_options(POOL_SIZE)) if grpcio_has_a105() else None
    with started_pools(target, streams={"size": POOL_SIZE}) as pools:
        pooled = open_streams(pools["streams"].get_channel, STREAMS, settings.hold)
    rows = [stream_ratio(pooled, single, "streams.pool")]
    if scaled is None:
        note = f"skipped: grpcio {grpc.__version__} < 1.84 has no connectionScaling"
        rows.append(Row("streams.a105", None, pooled.describe(STREAMS), note))
    else:
        rows.append(stream_ratio(pooled, scaled, "streams.a105", f"K={POOL_SIZE}: "))
    return rows
