"""Rows 1 and 2: ``get_channel()``, stubs and the per-RPC pick, one thread and many."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from functools import partial

from ..._pool import Pool
from ...testing.echo import EchoServer
from .core import (
    B_ECHO,
    POOL_SIZE,
    STRATEGIES,
    THREADS,
    EchoStub,
    Row,
    Settings,
    interleave,
    ns,
    paired_spread,
    per_call,
    steady_per_call,
)
from .server import started_pools


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
    res = interleave(
        {
            "pool": partial(per_call, pool.get_channel, n),
            "bare": partial(per_call, bare, n),
            "lock": partial(per_call, locked.get_channel, n),
        },
        settings.rounds,
    )
    # min: the cost without interruptions by other processes
    best = {name: min(samples) for name, samples in res.items()}
    target = ("<=", 3.0) if strategy == "round_robin" else None
    rows = [
        Row(
            f"get.{strategy}",
            best["pool"] / best["bare"],
            ns(best["pool"]),
            f"bare {ns(best['bare'])}",
            target,
            paired_spread(res, "pool", "bare"),
        )
    ]
    if strategy == "round_robin":
        rows.append(
            Row(
                "get.lock",
                best["pool"] / best["lock"],
                ns(best["pool"]),
                f"lock {ns(best['lock'])}",
            )
        )
    return rows


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
    return Row("stub", best["stub"] / best["build"], ns(best["stub"]), f"built {ns(best['build'])}")


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
        ns(best["pick"]),
        f"get_channel {ns(best['get'])}",
    )


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
    res = interleave(samplers, settings.thread_rounds)
    best = {name: min(s) for name, s in res.items()}
    rows = []
    for n in thread_counts:
        target = ("<=", 1.2) if n == 16 else None
        rows.append(
            Row(
                f"threads.{n}",
                best[str(n)] / best["1"],
                ns(best[str(n)]),
                f"1 thread {ns(best['1'])}",
                target,
                paired_spread(res, str(n), "1"),
            )
        )
    if "lock16" in best:
        rows.append(
            Row(
                "threads.lock16",
                best["16"] / best["lock16"],
                ns(best["16"]),
                f"lock {ns(best['lock16'])}",
                ("<=", 0.5),  # at least 2x faster
                paired_spread(res, "16", "lock16"),
            )
        )
    return rows


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
