"""``python -m grpc_pool bench``: the pool against baselines measured in the same run.

Every row times the pool's path and its baseline in one process, interleaved
round by round (the machine may be shared: load then hits both alike), and
reports pool / baseline. Targets only print PASS or MISS; nothing fails on a miss.
``benchmarks/`` (pytest-benchmark) runs the same scenarios.
"""

from __future__ import annotations

import argparse
import os
import queue
import select
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from itertools import repeat
from typing import Any, TextIO

import grpc

from ._commands import Register
from ._echo import EchoServer
from ._pool import Pool

__all__ = [
    "FULL",
    "HEADER",
    "QUICK",
    "ROWS",
    "Row",
    "Settings",
    "bench_server",
    "format_table",
    "run_bench",
    "started_pools",
]

STRATEGIES = ("round_robin", "random", "power_of_two")
THREADS = (4, 16, 64)
STREAMS = 400
STREAM_LIMIT = 100  # the bench server's grpc.max_concurrent_streams
# The sync server holds one thread per open stream: room for all of them.
SERVER_WORKERS = 500
POOL_SIZE = 4

BENCH_SERVICE = "grpc_pool.bench.Bench"
B_ECHO = f"/{BENCH_SERVICE}/Echo"  # unary: the request back
B_BURST = f"/{BENCH_SERVICE}/Burst"  # the request back int(request) times, no delay
B_HOLD = f"/{BENCH_SERVICE}/Hold"  # one message, then open for float(request) s
BURST = b"10"

# Row key -> label, in table order. The CLI test checks every label is printed.
ROWS: dict[str, str] = {
    "get.round_robin": "1a get_channel() round_robin / bare tuple read",
    "get.random": "1b get_channel() random / bare tuple read",
    "get.power_of_two": "1c get_channel() power_of_two / bare tuple read",
    "get.lock": "1d get_channel() round_robin / lock-protected pool",
    "stub": "1e pool.stub(Stub) / Stub(pool.get_channel())",
    "channel.pick": "1f pool.channel per-RPC pick (channel + its multi-callable) / get_channel()",
    "threads.4": "2a get_channel() 4 threads / 1 thread (per call)",
    "threads.16": "2b get_channel() 16 threads / 1 thread (per call)",
    "threads.64": "2c get_channel() 64 threads / 1 thread (per call)",
    "threads.lock16": "2d get_channel() 16 threads / lock-protected pool, 16 threads",
    "rpc.unary": "3a unary echo via pool / raw channel (wall time)",
    "rpc.unary_cpu": "3b unary echo via pool / raw channel (client CPU time)",
    "rpc.unary_untracked": "3c unary echo via pool, track_in_flight=False / raw channel",
    "rpc.stream": f"3d server-streaming echo ({BURST.decode()} msgs) via pool / raw channel",
    "rpc.threads": "3e unary echo from 8 threads: pool of 4 / pool of 1 (per RPC)",
    "channel.unary": "3f unary echo, stub built once on pool.channel / on a raw channel",
    "channel.stream": (
        f"3g server-streaming echo ({BURST.decode()} msgs), stub built once on pool.channel"
        " / on a raw channel"
    ),
    "streams.pool": (
        f"4 {STREAMS} long-lived streams, {STREAM_LIMIT} per connection:"
        " pool of 4 / 1 channel (time until all open)"
    ),
    "slow.publish": "5a register -> published / bare queue hand-off",
    "slow.closing": "5b writer round trip while it closes a retired channel / idle writer",
    "slow.restart": "5c server restart -> pool healthy / raw channel READY",
}


@dataclass(frozen=True)
class Settings:
    """How much to measure: FULL for the report, QUICK for a smoke run of every row."""

    rounds: int  # interleaved rounds, single-thread micro benchmarks
    calls: int  # calls per timed block
    thread_rounds: int  # interleaved rounds, contention
    thread_window: float  # seconds of steady state per contention sample
    rpc_rounds: int  # interleaved rounds, RPCs
    rpc_calls: int  # RPCs per timed block
    rpc_window: float  # seconds of steady state per multi-threaded RPC sample
    hold: float  # seconds each long-lived stream stays open
    samples: int  # register -> publish samples
    restarts: int  # server restarts


FULL = Settings(
    rounds=7,
    calls=100_000,
    thread_rounds=9,
    thread_window=0.05,
    rpc_rounds=50,
    rpc_calls=20,
    rpc_window=0.2,
    hold=1.5,
    samples=20,
    restarts=3,
)
QUICK = Settings(
    rounds=3,
    calls=20_000,
    thread_rounds=2,
    thread_window=0.02,
    rpc_rounds=4,
    rpc_calls=10,
    rpc_window=0.1,
    hold=1.0,
    samples=4,
    restarts=1,
)


@dataclass(frozen=True)
class Row:
    """One result: ratio = pool / baseline (below 1: the pool is faster)."""

    key: str
    ratio: float | None
    pool: str
    baseline: str
    target: tuple[str, float] | None = None  # ("<=", 3.0): ratio <= 3.0 passes

    @property
    def label(self) -> str:
        return ROWS[self.key]

    @property
    def verdict(self) -> str:
        if self.target is None:
            return ""
        if self.ratio is None:
            return "ERROR"
        op, limit = self.target
        ok = self.ratio <= limit if op == "<=" else self.ratio >= limit
        return "PASS" if ok else "MISS"

    def cells(self) -> list[str]:
        ratio = "-" if self.ratio is None else f"{self.ratio:.2f}x"
        target = "" if self.target is None else f"{self.target[0]} {self.target[1]:g}x"
        return [self.label, ratio, target, self.verdict, self.pool, self.baseline]


HEADER = ["benchmark", "ratio", "target", "result", "pool", "baseline"]


def format_table(rows: Sequence[Row]) -> str:
    """A markdown table, rows in ``ROWS`` order."""
    order = list(ROWS)
    lines = [HEADER, ["---"] * len(HEADER)]
    lines += [r.cells() for r in sorted(rows, key=lambda r: order.index(r.key))]
    return "\n".join("| " + " | ".join(cells) + " |" for cells in lines)


# -- timing ------------------------------------------------------------------------
def per_call(
    fn: Callable[[], object], number: int, clock: Callable[[], float] = time.perf_counter
) -> float:
    """Seconds per call of ``fn``, the loop step included (as timeit counts it).

    clock: ``time.process_time`` gives this process's CPU time, all its threads
    (gRPC's included), instead of wall time.
    """
    start = clock()
    for _ in repeat(None, number):
        fn()
    return (clock() - start) / number


def interleave(samplers: dict[str, Callable[[], float]], rounds: int) -> dict[str, list[float]]:
    """Every sampler once per round, in rotating order: drift and other processes' load
    hit all alike, and none always runs right after the same neighbour."""
    for sample in samplers.values():
        sample()  # warm up: first-call costs, caches, lazily started threads
    results: dict[str, list[float]] = {name: [] for name in samplers}
    names = list(samplers)
    for i in range(rounds):
        for name in names[i % len(names) :] + names[: i % len(names)]:  # no fixed position
            results[name].append(samplers[name]())
    return results


def _ns(seconds: float) -> str:
    return f"{seconds * 1e9:.0f} ns"


def _us(seconds: float) -> str:
    return f"{seconds * 1e6:.0f} us"


def _join_all(threads: Sequence[threading.Thread], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    alive = [t.name for t in threads if t.is_alive()]
    if alive:
        raise RuntimeError(f"threads still running after {timeout:g}s: {alive[:5]}")


# -- 1. get_channel, single thread ---------------------------------------------------
class LockedRoundRobin:
    """Baseline (b): the obvious thread-safe pool, a lock around a round-robin index."""

    def __init__(self, channels: Sequence[object]) -> None:
        self._lock = threading.Lock()
        self._channels = list(channels)
        self._next = 0

    def get_channel(self) -> object:
        with self._lock:
            channel = self._channels[self._next % len(self._channels)]
            self._next += 1
            return channel


def bare_tuple_read(items: tuple[object, ...]) -> Callable[[], object]:
    """Baseline (a): a function returning an element of a tuple."""

    def read() -> object:
        return items[0]

    return read


def get_channel_rows(pool: Pool, strategy: str, settings: Settings) -> list[Row]:
    """``get_channel()`` of one pool against (a) a bare tuple read and (b) a locked pool."""
    bare = bare_tuple_read(pool._snapshot)
    locked = LockedRoundRobin(pool._snapshot)
    n = settings.calls
    best = {
        name: min(samples)  # min: the cost without interruptions by other processes
        for name, samples in interleave(
            {
                "pool": partial(per_call, pool.get_channel, n),
                "bare": partial(per_call, bare, n),
                "lock": partial(per_call, locked.get_channel, n),
            },
            settings.rounds,
        ).items()
    }
    target = ("<=", 3.0) if strategy == "round_robin" else None
    rows = [
        Row(
            f"get.{strategy}",
            best["pool"] / best["bare"],
            _ns(best["pool"]),
            f"bare {_ns(best['bare'])}",
            target,
        )
    ]
    if strategy == "round_robin":
        rows.append(
            Row(
                "get.lock",
                best["pool"] / best["lock"],
                _ns(best["pool"]),
                f"lock {_ns(best['lock'])}",
            )
        )
    return rows


class EchoStub:
    """Shaped like a generated stub: one multi-callable per method, built in __init__."""

    def __init__(self, channel: grpc.Channel) -> None:
        self.Echo: Any = channel.unary_unary(B_ECHO)
        self.Burst: Any = channel.unary_stream(B_BURST)
        self.Hold: Any = channel.unary_stream(B_HOLD)


def stub_row(pool: Pool, settings: Settings) -> Row:
    """``pool.stub(EchoStub)`` (cached per channel) against building the stub per call."""
    n = max(1, settings.calls // 10)  # building a stub is ~100x a get_channel()
    best = {
        name: min(samples)
        for name, samples in interleave(
            {
                "stub": partial(per_call, partial(pool.stub, EchoStub), n),
                "build": partial(per_call, lambda: EchoStub(pool.get_channel()), n),
            },
            settings.rounds,
        ).items()
    }
    return Row(
        "stub", best["stub"] / best["build"], _ns(best["stub"]), f"built {_ns(best['build'])}"
    )


def channel_pick_row(pool: Pool, settings: Settings) -> Row:
    """What ``pool.channel`` adds before each RPC: pick a channel and look up that
    channel's cached multi-callable, against a bare ``get_channel()``."""
    echo = pool.channel.unary_unary(B_ECHO)
    best = {
        name: min(samples)
        for name, samples in interleave(
            {
                "pick": partial(per_call, partial(echo._pick, None, None), settings.calls),
                "get": partial(per_call, pool.get_channel, settings.calls),
            },
            settings.rounds,
        ).items()
    }
    return Row(
        "channel.pick",
        best["pick"] / best["get"],
        _ns(best["pick"]),
        f"get_channel {_ns(best['get'])}",
    )


# -- 2. contention -------------------------------------------------------------------
def steady_per_call(
    fn: Callable[[], object], threads: int, window: float, chunk: int = 50
) -> float:
    """Aggregate wall time per call while ``threads`` threads call ``fn`` nonstop.

    Only the steady state is counted: the calls finished within ``window`` seconds
    after a warm-up, from timestamps the threads take themselves. This thread only
    waits (it does not compete for the GIL), and starting or joining the threads is
    not measured.
    """
    marks: list[list[tuple[float, int]]] = [[] for _ in range(threads)]
    barrier = threading.Barrier(threads + 1, timeout=30)
    warmup = max(0.02, window / 2)
    stop_at = [0.0]

    def body(log: list[tuple[float, int]]) -> None:
        barrier.wait()
        done = 0
        while True:
            for _ in repeat(None, chunk):
                fn()
            done += chunk
            now = time.perf_counter()
            log.append((now, done))
            if now >= stop_at[0]:
                return

    workers = [
        threading.Thread(target=body, args=(log,), name=f"bench-load-{i}", daemon=True)
        for i, log in enumerate(marks)
    ]
    for worker in workers:
        worker.start()
    opened = time.perf_counter()
    stop_at[0] = opened + warmup + window
    barrier.wait()
    _join_all(workers, 60.0)
    start, end = opened + warmup, stop_at[0]

    def done_by(log: list[tuple[float, int]], moment: float) -> int:
        return max((n for t, n in log if t <= moment), default=0)

    calls = sum(done_by(log, end) - done_by(log, start) for log in marks)
    if calls == 0:
        raise RuntimeError(f"no call finished within {window:g}s")
    return (end - start) / calls


def contention_rows(pool: Pool, thread_counts: Sequence[int], settings: Settings) -> list[Row]:
    """Per-call cost at N threads against 1 thread; and against a locked pool at 16."""
    locked = LockedRoundRobin(pool._snapshot)
    window = settings.thread_window
    samplers: dict[str, Callable[[], float]] = {
        "1": partial(steady_per_call, pool.get_channel, 1, window)
    }
    for n in thread_counts:
        samplers[str(n)] = partial(steady_per_call, pool.get_channel, n, window)
        if n == 16:
            samplers["lock16"] = partial(steady_per_call, locked.get_channel, 16, window)
    best = {name: min(s) for name, s in interleave(samplers, settings.thread_rounds).items()}
    rows = []
    for n in thread_counts:
        target = ("<=", 1.2) if n == 16 else None
        rows.append(
            Row(
                f"threads.{n}",
                best[str(n)] / best["1"],
                _ns(best[str(n)]),
                f"1 thread {_ns(best['1'])}",
                target,
            )
        )
    if "lock16" in best:
        rows.append(
            Row(
                "threads.lock16",
                best["16"] / best["lock16"],
                _ns(best["16"]),
                f"lock {_ns(best['lock16'])}",
                ("<=", 0.5),  # at least 2x faster
            )
        )
    return rows


# -- the bench server: a child process, so its work does not take the client's GIL --
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
    command = [sys.executable, "-m", "grpc_pool._bench", "serve", str(workers), str(max_streams)]
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


def paired(results: dict[str, list[float]], subject: str, baseline: str) -> float:
    """Median over rounds of subject / baseline, each pair measured back to back."""
    return statistics.median(
        a / b for a, b in zip(results[subject], results[baseline], strict=True)
    )


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
    # Paired medians: one RPC's time varies with scheduling far more than the overhead.
    med = {name: statistics.median(samples) for name, samples in res.items()}
    within_5 = ("<=", 1.05)

    def row(key: str, subject: str, baseline: str, target: tuple[str, float] | None) -> Row:
        return Row(
            key,
            paired(res, subject, baseline),
            _us(med[subject]),
            f"raw {_us(med[baseline])}",
            target,
        )

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
    med = {name: statistics.median(samples) for name, samples in res.items()}
    return [
        Row(
            key,
            paired(res, subject, base),
            _us(med[subject]),
            f"raw {_us(med[base])}",
            ("<=", 1.05),
        )
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
    return Row("rpc.threads", four / one, _us(four), f"pool of 1 {_us(one)}")


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
        _join_all(threads, deadline + 5)
    finally:
        for call in calls:
            call.cancel()  # no-op for finished streams; ends the rest on an error above
        _join_all(threads, 10)
    # Queued: no slot until a stream ended, at least hold minus the time to start them all.
    return StreamRun(sorted(opened), failed, sum(1 for w in waited if w > hold / 4))


def stream_row(target: str, settings: Settings) -> Row:
    """400 long-lived streams against a per-connection limit of 100: 1 channel vs a pool of 4."""
    raw = grpc.insecure_channel(target)
    try:
        grpc.channel_ready_future(raw).result(timeout=20)
        single = open_streams(lambda: raw, STREAMS, settings.hold)
    finally:
        raw.close()
    with started_pools(target, streams={"size": POOL_SIZE}) as pools:
        pooled = open_streams(pools["streams"].get_channel, STREAMS, settings.hold)
    # A run in which streams failed has no "time until all open": no ratio then, the
    # failure is the result (on a slow machine the single channel's queued streams can
    # run out of deadline).
    baseline = single.describe(STREAMS)
    ratio: float | None = pooled.all_open / single.all_open
    if not single.complete(STREAMS):
        ratio, baseline = None, f"FAILED: {baseline}"
    pool_cell = pooled.describe(STREAMS)
    if not pooled.complete(STREAMS):
        ratio, pool_cell = None, f"FAILED: {pool_cell}"
    return Row("streams.pool", ratio, pool_cell, baseline)


# -- 5. slow paths -------------------------------------------------------------------
def publish_row(target: str, settings: Settings) -> Row:
    """A worker's Register until a reader waiting in wait_ready() sees the channel."""
    pool = Pool(target, size=1, insecure=True, retire_grace=0.1, name="bench-publish")
    latencies: list[float] = []
    try:
        pool.wait_ready(timeout=20, min_ready=1)
        commands = pool._writer.queue
        put = commands.put
        posted: list[float] = []

        def timed_put(item: object, block: bool = True, timeout: float | None = None) -> None:
            if isinstance(item, Register):
                posted.append(time.perf_counter())
            put(item, block, timeout)

        # A worker binds the queue's put when it starts: scale_up's worker posts through this.
        commands.put = timed_put  # type: ignore[method-assign]
        for _ in range(settings.samples):
            posted.clear()
            pool.scale_up(1)
            pool.wait_ready(timeout=20, min_ready=2)
            if not posted:
                raise RuntimeError("no Register seen on the writer's queue")
            latencies.append(time.perf_counter() - posted[0])
            pool.scale_down(1)
    finally:
        pool.close(grace=0)
    handoffs = _handoff_latencies(settings.samples)
    pool_s, bare_s = statistics.median(latencies), statistics.median(handoffs)
    return Row(
        "slow.publish",
        pool_s / bare_s,
        f"{_us(pool_s)} (max {_us(max(latencies))})",
        f"hand-off {_us(bare_s)}",
    )


def closing_row(target: str, settings: Settings) -> Row:
    """How long a command waits while the writer retires and closes a channel.

    The close is deferred (it waits for grpcio's poller thread to end, and never
    blocks the writer meanwhile), so a single round trip right after scale_down
    would time an idle writer. Instead: round trips back to back from the scale
    down until the channel is closed (``stats().retiring`` back to 0); the slowest
    of them is what a Register or Lost arriving then could wait. The baseline is the
    slowest of as many round trips, made the same way, with nothing to close.
    """
    pool = Pool(target, size=2, insecure=True, retire_grace=0.0, name="bench-closing")
    idle: list[float] = []
    busy: list[float] = []
    trips = 0
    try:
        pool.wait_ready(timeout=20, min_ready=2)
        for _ in range(settings.restarts + 1):
            pool.scale_down(1)  # no grace: closed once grpcio's poller has ended
            during = _round_trips_while_retiring(pool, timeout=10.0)
            trips += len(during)
            busy.append(max(during))
            idle.append(max(_round_trips_idle(pool, len(during))))
            pool.scale_up(1)
            pool.wait_ready(timeout=20, min_ready=2)
    finally:
        pool.close(grace=0)
    busy_s, idle_s = statistics.median(busy), statistics.median(idle)
    return Row(
        "slow.closing",
        busy_s / idle_s,
        f"{_us(busy_s)} (max {_us(max(busy))}; slowest of {trips} round trips during "
        f"{len(busy)} closes)",
        f"idle writer, slowest of as many: {_us(idle_s)}",
    )


def _round_trips_idle(pool: Pool, n: int) -> list[float]:
    """``n`` round trips made as in ``_round_trips_while_retiring``, nothing retiring."""
    trips = []
    for _ in range(n):
        trips.append(_writer_round_trip(pool))
        pool.stats()
    return trips


def _round_trips_while_retiring(pool: Pool, timeout: float) -> list[float]:
    """Writer round trips back to back until no channel is retiring (at least one)."""
    deadline = time.monotonic() + timeout
    trips = [_writer_round_trip(pool)]
    while pool.stats().retiring and time.monotonic() < deadline:
        trips.append(_writer_round_trip(pool))
    if pool.stats().retiring:
        raise RuntimeError(f"the retired channel was not closed within {timeout:g}s")
    return trips


def _writer_round_trip(pool: Pool) -> float:
    start = time.perf_counter()
    pool._call(lambda: None)  # runs on the writer thread, after what it is doing now
    return time.perf_counter() - start


def _handoff_latencies(samples: int) -> list[float]:
    """The floor for any writer design: a thread posts to a queue, a consumer thread
    takes it and notifies a condition, the waiting thread wakes."""
    commands: queue.SimpleQueue[int | None] = queue.SimpleQueue()
    seen: list[int] = []
    ready = threading.Condition()

    def consume() -> None:
        while (item := commands.get(timeout=30)) is not None:
            with ready:
                seen.append(item)
                ready.notify_all()

    def post(item: int, posted: list[float]) -> None:
        time.sleep(0.002)  # the main thread is waiting by then, as in wait_ready()
        posted.append(time.perf_counter())
        commands.put(item)

    consumer = threading.Thread(target=consume, name="bench-handoff", daemon=True)
    consumer.start()
    latencies: list[float] = []
    try:
        for i in range(samples):
            posted: list[float] = []
            poster = threading.Thread(target=post, args=(i, posted), name="bench-poster")
            with ready:
                poster.start()
                if not ready.wait_for(partial(seen.__contains__, i), timeout=10):
                    raise RuntimeError("hand-off not seen within 10s")
            latencies.append(time.perf_counter() - posted[0])
            _join_all([poster], 10)
    finally:
        commands.put(None)
        _join_all([consumer], 10)
    return latencies


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


# -- the table -----------------------------------------------------------------------
def micro_rows(settings: Settings) -> list[Row]:
    """Scenarios 1 and 2: no RPCs, so an in-process server is enough."""
    with (
        EchoServer() as server,
        started_pools(
            server.target, **{s: {"size": POOL_SIZE, "strategy": s} for s in STRATEGIES}
        ) as pools,
    ):
        rows = [row for s in STRATEGIES for row in get_channel_rows(pools[s], s, settings)]
        rows.append(stub_row(pools["round_robin"], settings))
        rows.append(channel_pick_row(pools["round_robin"], settings))
        rows += contention_rows(pools["round_robin"], THREADS, settings)
    return rows


def run_bench(quick: bool = False, out: TextIO = sys.stdout) -> int:
    """Run every scenario, print the table; 1 if a scenario failed (a MISS is not a failure)."""
    settings = QUICK if quick else FULL
    started, load = time.monotonic(), _load()
    rows: list[Row] = []
    failed = 0
    with bench_server() as target:
        scenarios: list[tuple[str, Callable[[], list[Row]]]] = [
            ("1-2 get_channel, stub, threads", lambda: micro_rows(settings)),
            ("3 RPC overhead", lambda: rpc_rows(target, settings)),
            ("3e RPCs from 8 threads", lambda: [rpc_threads_row(target, settings)]),
            ("3f-g stub built once on pool.channel", lambda: channel_rows(target, settings)),
            ("4 stream limit", lambda: [stream_row(target, settings)]),
            ("5a register -> publish", lambda: [publish_row(target, settings)]),
            ("5b writer closing a channel", lambda: [closing_row(target, settings)]),
            ("5c restart -> healthy", lambda: [restart_row(settings)]),
        ]
        for title, scenario in scenarios:
            print(f"bench: {title} ...", file=sys.stderr, flush=True)
            try:
                rows += scenario()
            except Exception as exc:  # reported; the other scenarios still run
                failed += 1
                print(f"bench: {title} failed: {exc!r}", file=sys.stderr)
    have = {r.key for r in rows}
    rows += [Row(key, None, "ERROR (see stderr)", "") for key in ROWS if key not in have]
    mode = "quick" if quick else "full"
    print(
        f"grpc_pool bench ({mode}): Python {sys.version.split()[0]}, grpcio {grpc.__version__},"
        f" {os.cpu_count()} CPUs; ratio = pool / baseline",
        file=out,
    )
    print(format_table(rows), file=out)
    # Other processes' load moves the multi-threaded rows most: say how busy the machine was.
    print(
        f"({time.monotonic() - started:.0f} s; load average {load} at start, {_load()} at end)",
        file=out,
    )
    return 1 if failed else 0


def _load() -> str:
    return f"{os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else "n/a"


def bench_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--quick", action="store_true", help="fewer rounds: a smoke run of every row"
    )


def bench_command(args: argparse.Namespace) -> int:
    return run_bench(quick=args.quick)


if __name__ == "__main__":  # the bench server child: python -m grpc_pool._bench serve W S
    if sys.argv[1:2] != ["serve"] or len(sys.argv) != 4:
        sys.exit("usage: python -m grpc_pool._bench serve WORKERS MAX_STREAMS")
    serve(int(sys.argv[2]), int(sys.argv[3]))
