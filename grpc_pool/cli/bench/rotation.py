"""5f: a backend's graceful stop (GOAWAY) to the last RPC picked onto its pooled
channels: the pool (a closed connection leaves the rotation, a failed pick tells
the worker at once) against the same pool with the old rule (a reconnecting
channel stays in rotation until its reconnect fails), interleaved in one run."""

from __future__ import annotations

import contextlib
import statistics
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import grpc_pool
from grpc_pool._readers import retry
from grpc_pool._writer import layout
from grpc_pool.testing import ECHO, EchoServer

from .core import QUICK, Row, Settings

__all__ = ["rotation_row", "stop_window"]

AFTER = 1.0  # seconds of RPCs after the stop


class _LastPick:
    """Round robin that remembers when each channel target was last picked."""

    def __init__(self) -> None:
        self.last: dict[str, float] = {}
        self._turn = 0

    def pick(self, channels: Sequence[Any]) -> Any:
        self._turn += 1
        channel = channels[self._turn % len(channels)]
        self.last[channel.target] = time.monotonic()
        return channel


@contextlib.contextmanager
def _old_rule() -> Iterator[None]:
    saved = layout.LEAVE_WHILE_RECONNECTING, retry.lost
    layout.LEAVE_WHILE_RECONNECTING = False
    retry.lost = lambda channel: None
    try:
        yield
    finally:
        layout.LEAVE_WHILE_RECONNECTING, retry.lost = saved


def stop_window() -> float:
    """Seconds from the stop of one of two backends to the last pick onto its channels."""
    strategy = _LastPick()
    stop = threading.Event()
    with EchoServer() as a, EchoServer() as b:
        target = f"ipv4:127.0.0.1:{a.port},127.0.0.1:{b.port}"
        config = dict(size=4, strategy=strategy, insecure=True, backoff_initial=0.05)
        with grpc_pool.Pool(target, **config) as pool:
            pool.wait_ready(timeout=10)
            deadline = time.monotonic() + 10
            while len(pool._snapshot) < 4 and time.monotonic() < deadline:
                time.sleep(0.01)
            dead = next(c.target for c in pool._snapshot if c.target.endswith(f":{a.port}"))
            echo = pool.channel.unary_unary(ECHO)

            def load() -> None:
                while not stop.is_set():
                    with contextlib.suppress(Exception):  # counted by the tests, not here
                        echo(b"x", timeout=2)

            threads = [threading.Thread(target=load) for _ in range(4)]
            for thread in threads:
                thread.start()
            time.sleep(0.2)
            stopped = time.monotonic()
            a.stop(1.0)  # graceful: GOAWAY, then the listener is gone
            time.sleep(AFTER)
            stop.set()
            for thread in threads:
                thread.join(10)
    return max(0.0, strategy.last.get(dead, stopped) - stopped)


def rotation_row(settings: Settings) -> Row:
    """Median windows over interleaved rounds (the machine's noise hits both)."""
    rounds = 2 if settings is QUICK else 5
    new: list[float] = []
    old: list[float] = []
    for _ in range(rounds):
        new.append(stop_window())
        with _old_rule():
            old.append(stop_window())
    pool_ms, base_ms = statistics.median(new) * 1e3, statistics.median(old) * 1e3
    return Row(
        "rotation.stop",
        pool_ms / base_ms if base_ms else None,
        f"median {pool_ms:.1f} ms (max {max(new) * 1e3:.1f} ms, {rounds} stops)",
        f"old rule: median {base_ms:.1f} ms (max {max(old) * 1e3:.1f} ms)",
    )
