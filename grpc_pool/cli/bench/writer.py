"""Rows 5a and 5b: the writer thread, publishing a channel and answering while it retires."""

from __future__ import annotations

import queue
import statistics
import threading
import time
from functools import partial

from ..._contract.commands import Register
from ..._pool import Pool
from .core import Row, Settings, join_all, us


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
        f"{us(pool_s)} (max {us(max(latencies))})",
        f"hand-off {us(bare_s)}",
    )


RETIRED = 100  # channels the writer retires at once in row 5b


def closing_row(target: str, settings: Settings) -> Row:
    """The writer's answer time while it retires and closes 100 channels at once.

    A pool grown to 101 channels (retire grace 0.5 s) is resized to 1: from then
    on, writer round trips (``pool._call``: a no-op run on the writer thread)
    go back to back until every retired channel is closed (``stats().retiring``
    back to 0). The baseline: as many round trips, made the same way, to the
    same writer once it is idle. Median and max of each; the ratio is of the
    medians. A writer that closed channels or waited for grpcio itself would
    make the round trips queue behind that work.
    """
    pool = Pool(
        target,
        size=1,
        max_size=RETIRED + 1,
        insecure=True,
        retire_grace=0.5,  # round trips run through the grace and then the closing
        name="bench-closing",
    )
    busy: list[float] = []
    idle: list[float] = []
    try:
        pool.wait_ready(timeout=20, min_ready=1)
        for _ in range(settings.retires):
            pool.resize(RETIRED + 1)
            pool.wait_ready(timeout=60, min_ready=RETIRED + 1)
            pool.resize(1)  # after the grace each closes once grpcio's poller has ended
            during = _round_trips_while_retiring(pool, timeout=30.0)
            busy += during
            time.sleep(0.5)  # the stopped workers' threads end: an idle process
            idle += _round_trips_idle(pool, len(during))
    finally:
        pool.close(grace=0)
    busy_s, idle_s = statistics.median(busy), statistics.median(idle)
    return Row(
        "slow.closing",
        busy_s / idle_s,
        f"median {us(busy_s)}, max {us(max(busy))} ({len(busy)} round trips while"
        f" {settings.retires} x {RETIRED} channels closed)",
        f"idle writer: median {us(idle_s)}, max {us(max(idle))}",
        ("<=", 2.0),
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
        raise RuntimeError(f"the retired channels were not closed within {timeout:g}s")
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
            join_all([poster], 10)
    finally:
        commands.put(None)
        join_all([consumer], 10)
    return latencies
