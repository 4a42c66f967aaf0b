"""What every row shares: the row labels, settings, the result type, the table and
the timing helpers."""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import repeat
from typing import Any

import grpc

STRATEGIES = ("round_robin", "random", "power_of_two", "peak_ewma")
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
    "get.peak_ewma": "1g get_channel() peak_ewma / bare tuple read",
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
    "streams.a105": (
        f"4b {STREAMS} long-lived streams, {STREAM_LIMIT} per connection: pool of 4 /"
        f" 1 channel with A105 connectionScaling K={POOL_SIZE} (grpcio >= 1.84)"
    ),
    "slow.publish": "5a register -> published / bare queue hand-off",
    "slow.closing": "5b writer round trip while it retires 100 channels / idle writer",
    "slow.restart": "5c server restart -> pool healthy / raw channel READY",
    "fork.idle": "5d os.fork() with an idle pool of 4 / bare os.fork()",
    "fork.busy": "5e os.fork() with a pool of 4, 16 threads of RPCs in flight / bare os.fork()",
    "rotation.stop": (
        "5f backend graceful stop -> last RPC picked onto its channels:"
        " pool / pool with the old rotation rule"
    ),
    "idle.cpu": "5g idle CPU (process CPU time over an idle window): pool of 8 / 8 raw channels",
    "idle.threads": "5h OS threads, idle: pool of 8 / 8 raw channels",
    "fork.pool8": "5i os.fork() with an idle pool of 8 / bare os.fork() (each in its own process)",
    "fork.raw8": "5j os.fork() with an idle pool of 8 / with 8 raw channels",
    "fleet.share": (
        "7a simulated fleet of pools, backends K -> 2K one at a time:"
        " new backends' connections / their fair share"
    ),
    "outliers.round_robin": (
        "8a failed RPCs, 1 of 4 backends answering INTERNAL, 200 RPC/s open loop, pool of 8"
        " round_robin / raw round_robin + A50 outlier_detection ((failed + 1) / (failed + 1))"
    ),
    "outliers.power_of_two": (
        "8b failed RPCs, 1 of 4 backends answering INTERNAL, 200 RPC/s open loop, pool of 8"
        " power_of_two / raw round_robin + A50 outlier_detection ((failed + 1) / (failed + 1))"
    ),
    "outliers.peak_ewma": (
        "8c failed RPCs, 1 of 4 backends answering INTERNAL, 200 RPC/s open loop, pool of 8"
        " peak_ewma / raw round_robin + A50 outlier_detection ((failed + 1) / (failed + 1))"
    ),
    "latency.steady": (
        "9a p99, 1 of 4 backends at 60 ms (others 2 ms), 200 RPC/s open loop, pool of 8:"
        " peak_ewma / pool over the 3 fast backends only"
    ),
    "latency.episode": (
        "9b failed RPCs, 1 of 4 backends stalls 1.5 s for the middle third, deadline 1 s:"
        " peak_ewma / power_of_two ((failed + 1) / (failed + 1))"
    ),
    "tail.steady": (
        "9c p99, 1 of 4 backends slow (60 ms): pool with hedging / pool over the 3 fast ones"
    ),
    "tail.episode": (
        "9d failed RPCs, 1 of 4 backends stalls 1.5 s for the middle third:"
        " pool with hedging / raw round_robin ((failed + 1) / (failed + 1))"
    ),
    "tail.extra": "9e RPCs sent with hedging / without, on healthy backends (fast-only)",
    "tail.both": (
        "9f p99, 1 of 4 backends slow (60 ms): pool peak_ewma + hedging / pool over the 3 fast ones"
    ),
}

# Rows of ``bench --deploy`` and benchmarks/test_deploy.py (grpc_pool.testing.deploy):
# failed RPCs through deploys, (pool + 1) / (raw round_robin + retryPolicy + 1).
DEPLOY_ROWS: dict[str, str] = {
    "deploy.restart": (
        "6a failed RPCs, graceful rolling restart of 3 backends:"
        " pool / raw round_robin + retryPolicy ((failed + 1) / (failed + 1))"
    ),
    "deploy.update": (
        "6b failed RPCs, rolling update of 3 backends behind DNS:"
        " pool / raw round_robin + retryPolicy ((failed + 1) / (failed + 1))"
    ),
    "deploy.fleet": (
        "6c loopback fleet, 4 processes x 6 pools of 2, backends 4 -> 8: new backends' share"
        " of connections / their fair share, 5 s after the scale-out (random subsets;"
        " fleet_index in the cell; baseline: raw round_robin)"
    ),
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
    retires: int  # times the writer retires 100 channels at once
    forks: int  # os.fork() calls per measured block, each side
    fork_rounds: int  # blocks per side: bare, idle pool, pool with RPCs in flight
    idle_window: float = 2.0  # seconds the idle processes are measured (rows 5g-5j)


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
    retires=3,
    forks=10,
    fork_rounds=3,
    idle_window=20.0,
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
    retires=1,
    forks=3,
    fork_rounds=1,
)


@dataclass(frozen=True)
class Row:
    """One result: ratio = pool / baseline (below 1: the pool is faster)."""

    key: str
    ratio: float | None
    pool: str
    baseline: str
    target: tuple[str, float] | None = None  # ("<=", 3.0): ratio <= 3.0 passes
    # Half the interquartile range of the per-round ratios (None: not measured that way).
    spread: float | None = None
    quick: bool = False  # measured by ``bench --quick``: few rounds

    @property
    def label(self) -> str:
        return ROWS.get(self.key) or DEPLOY_ROWS[self.key]

    @property
    def verdict(self) -> str:
        if self.target is None:
            return ""
        if self.ratio is None:
            return "ERROR"
        op, limit = self.target
        ok = self.ratio <= limit if op == "<=" else self.ratio >= limit
        if ok:
            return "PASS"
        # A quick run has few rounds: a miss within its own spread is noise, not a result.
        if self.quick and self.spread is not None and self.spread > abs(self.ratio - limit):
            return "noisy: run full"
        return "MISS"

    def cells(self) -> list[str]:
        ratio = "-" if self.ratio is None else f"{self.ratio:.2f}x"
        target = "" if self.target is None else f"{self.target[0]} {self.target[1]:g}x"
        return [self.label, ratio, target, self.verdict, self.pool, self.baseline]


HEADER = ["benchmark", "ratio", "target", "result", "pool", "baseline"]


def format_table(rows: Sequence[Row]) -> str:
    """A markdown table, rows in ``ROWS`` order."""
    order = [*ROWS, *DEPLOY_ROWS]
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


def ns(seconds: float) -> str:
    return f"{seconds * 1e9:.0f} ns"


def us(seconds: float) -> str:
    return f"{seconds * 1e6:.0f} us"


def join_all(threads: Sequence[threading.Thread], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    alive = [t.name for t in threads if t.is_alive()]
    if alive:
        raise RuntimeError(f"threads still running after {timeout:g}s: {alive[:5]}")


class EchoStub:
    """Shaped like a generated stub: one multi-callable per method, built in __init__."""

    def __init__(self, channel: grpc.Channel) -> None:
        self.Echo: Any = channel.unary_unary(B_ECHO)
        self.Burst: Any = channel.unary_stream(B_BURST)
        self.Hold: Any = channel.unary_stream(B_HOLD)


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
    join_all(workers, 60.0)
    start, end = opened + warmup, stop_at[0]

    def done_by(log: list[tuple[float, int]], moment: float) -> int:
        return max((n for t, n in log if t <= moment), default=0)

    calls = sum(done_by(log, end) - done_by(log, start) for log in marks)
    if calls == 0:
        raise RuntimeError(f"no call finished within {window:g}s")
    return (end - start) / calls


def spread(ratios: Sequence[float]) -> float:
    """Half the interquartile range of per-round ratios (0 for fewer than 2)."""
    if len(ratios) < 2:
        return 0.0
    q1, _, q3 = statistics.quantiles(ratios, n=4, method="inclusive")
    return (q3 - q1) / 2


def paired_spread(results: dict[str, list[float]], subject: str, baseline: str) -> float:
    """``spread`` of the per-round ratios subject / baseline (measured back to back)."""
    return spread([a / b for a, b in zip(results[subject], results[baseline], strict=True)])


def median_row(
    key: str,
    subject: Sequence[float],
    baseline: Sequence[float],
    fmt: Callable[[float], str],
    prefix: str,
    target: tuple[str, float] | None = None,
) -> Row:
    """A row whose ratio is its two displayed medians divided: the columns and the
    ratio come from one statistic; the spread from the rounds' paired ratios."""
    pool, base = statistics.median(subject), statistics.median(baseline)
    rounds = [a / b for a, b in zip(subject, baseline, strict=True)]
    return Row(key, pool / base, fmt(pool), f"{prefix}{fmt(base)}", target, spread(rounds))
