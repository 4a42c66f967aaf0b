"""The writer's retirement of channels: out of rotation now, then (after the grace,
or drained when closing) the gate shut, the RPC count into the totals, and the
channel handed to the reaper. A part of the writer (mixed into ``Writer``)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from ._channel import PooledChannel
from ._commands import Close, Wake
from ._config import PoolConfig
from ._reaper import Reaper
from ._state import Totals

if TYPE_CHECKING:
    import queue

__all__ = ["Retirement", "Retiring"]

logger = logging.getLogger("grpc_pool._writer")


@dataclass(slots=True)
class Retiring:
    channel: PooledChannel
    deadline: float
    early: bool  # close as soon as no RPC is in flight (pool closing)


class Retirement:
    """``_retire``, ``_drain_early`` and ``_reap``."""

    _name: str
    _config: PoolConfig
    _closing: Close | None
    _retiring: list[Retiring]
    _totals: Totals
    _reaper: Reaper
    queue: queue.Queue[object]

    if TYPE_CHECKING:

        def _publish(self) -> None: ...

    def _retire(self, channel: PooledChannel, published: bool = True) -> None:
        """Out of rotation now; closed after the grace, or once drained when closing.

        A channel never published cannot be held by a caller: it is closed at once.
        """
        if not published:
            channel._refuse(self._closing is not None)
            self._reaper.close(channel)
            return
        if self._closing is None:
            entry = Retiring(channel, time.monotonic() + self._config.retire_grace, False)
        else:
            entry = Retiring(channel, time.monotonic() + self._closing.grace, True)
            self._drain_early(entry)
        self._retiring.append(entry)

    def _drain_early(self, entry: Retiring) -> None:
        entry.early = True
        counter = entry.channel._counter
        if counter is not None:
            counter.on_idle = lambda: self.queue.put(Wake())

    def _reap(self) -> None:
        """Due retired channels: refuse new RPCs now (no grpcio call), count their
        RPCs into the totals in the same publish, and hand them to the reaper."""
        if not self._retiring:
            return
        now = time.monotonic()
        keep: list[Retiring] = []
        for entry in self._retiring:
            channel = entry.channel
            if now < entry.deadline and not (entry.early and channel.in_flight == 0):
                keep.append(entry)
                continue
            channel._refuse(self._closing is not None)  # its count is final from here
            busy = channel.in_flight
            if busy:
                logger.info(
                    "pool %s: closing %s with %d RPCs still in flight after the grace",
                    self._name,
                    channel.channel_id,
                    busy,
                )
            closed = self._totals.rpcs_closed + (channel.rpcs_total or 0)
            self._totals = replace(self._totals, rpcs_closed=closed)
            self._reaper.close(channel)
        if len(keep) != len(self._retiring):
            self._retiring = keep
            self._publish()
