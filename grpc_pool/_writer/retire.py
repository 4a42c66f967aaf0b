"""Retirement: a channel out of rotation stays open for its grace (or, while the
pool closes, until drained); then its gate is shut, its RPC count goes into the
totals in the same publish, and the reaper closes it. Writer thread only."""

from __future__ import annotations

import logging
import queue
import time
from collections.abc import Callable
from dataclasses import dataclass

from .._base.errors import PoolClosed
from .._base.parking import Parkable
from .._channel.pooled import PooledChannel
from .._contract.commands import Call, Pause, Register, Resize, SetPick

__all__ = ["Retirement", "Retiring", "answer_late"]

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class Retiring:
    channel: PooledChannel
    deadline: float
    early: bool  # close as soon as no RPC is in flight (pool closing)


class Retirement:
    """The channels out of rotation and not closed yet."""

    def __init__(self, name: str, grace: float, wake: Callable[[], None]) -> None:
        self._name = name
        self._grace = grace
        self._wake = wake  # posts a Wake: a draining channel went idle
        self.entries: list[Retiring] = []

    def channels(self) -> tuple[PooledChannel, ...]:
        return tuple(entry.channel for entry in self.entries)

    def pollers(self) -> list[Parkable]:
        """For a fork: each retiring channel's grpcio poller, parked once it has ended."""
        return [_Poller(entry.channel) for entry in self.entries]

    def deadlines(self) -> list[float]:
        return [entry.deadline for entry in self.entries]

    def retire(self, channel: PooledChannel, closing_grace: float | None) -> None:
        """Out of rotation now; closed after the grace, or once drained when the pool
        closes (``closing_grace``: the close's grace, None while not closing)."""
        if closing_grace is None:
            self.entries.append(Retiring(channel, time.monotonic() + self._grace, False))
        else:
            entry = Retiring(channel, time.monotonic() + closing_grace, True)
            self._drain_early(entry)
            self.entries.append(entry)

    def closing(self, grace: float) -> None:
        """The pool closes: every retiring channel closes once drained, by the new deadline."""
        deadline = time.monotonic() + grace
        for entry in self.entries:
            entry.deadline = min(entry.deadline, deadline)
            self._drain_early(entry)

    def _drain_early(self, entry: Retiring) -> None:
        entry.early = True
        counter = entry.channel._counter
        if counter is not None:
            counter.on_idle = self._wake

    def due(self, pool_closed: bool) -> list[PooledChannel]:
        """Due channels, out of this list: their gate is shut (no grpcio call), so
        their RPC count is final; the caller counts it and hands them to the reaper."""
        if not self.entries:
            return []
        now = time.monotonic()
        keep: list[Retiring] = []
        done: list[PooledChannel] = []
        for entry in self.entries:
            channel = entry.channel
            if now < entry.deadline and not (entry.early and channel.in_flight == 0):
                keep.append(entry)
                continue
            channel._shut(pool_closed)
            busy = channel.in_flight
            if busy:
                logger.info(
                    "pool %s: closing %s with %d RPCs still in flight after the grace",
                    self._name,
                    channel.channel_id,
                    busy,
                )
            done.append(channel)
        self.entries = keep
        return done


def answer_late(commands: queue.Queue[object], close: Callable[[PooledChannel], None]) -> None:
    """A closed writer's queue: late posts from workers (a Register racing the stop)
    hold channels, closed here; callers still waiting are answered."""
    while True:
        try:
            late = commands.get_nowait()
        except queue.Empty:
            return
        if isinstance(late, Register):
            late.channel._shut(pool_closed=True)
            close(late.channel)
        elif isinstance(late, (Resize, Call)):
            late.reply.set(error=PoolClosed("pool is closed"))
        elif isinstance(late, Pause):  # a fork right after close: nothing runs any more
            late.dispatched.set()
        elif isinstance(late, SetPick):
            late.reply.set(None)


class _Poller:
    """A retiring channel's grpcio poller, as the fork sees it: parked once ended."""

    __slots__ = ("_channel",)

    def __init__(self, channel: PooledChannel) -> None:
        self._channel = channel

    def park(self) -> None:
        pass

    def parked(self, deadline: float) -> bool:
        return self._channel._wait_for_poller(deadline)

    def unpark(self) -> None:
        pass
