"""The writer's timers: the periodic status event and autoscaling (its rule is
``_policy.autoscale``). A part of the writer (mixed into ``Writer``)."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from ._channel import PooledChannel
from ._commands import Close
from ._config import PoolConfig
from ._events import AutoscaleEvent, StatusEvent, StreamLimitEvent
from ._policy import autoscale
from ._slots import SlotTable
from ._stats import pool_state

if TYPE_CHECKING:
    from ._retire import Retiring
    from ._worker import Worker

__all__ = ["Timers"]

logger = logging.getLogger("grpc_pool._writer")


class Timers:
    """``_report_status`` and ``_autoscale``, called by the writer's loop."""

    _name: str
    _config: PoolConfig
    _closing: Close | None
    _table: SlotTable[int, PooledChannel]
    _workers: dict[int, Worker]
    _retiring: list[Retiring]
    _next_status: float
    _next_autoscale: float

    if TYPE_CHECKING:

        def _resize(self, size: int) -> int: ...
        def _emit(self, kind: Any, **fields: Any) -> None: ...

    def _report_status(self) -> None:
        """The periodic status event, with the sizes as they are now (not as configured)."""
        interval = self._config.status_interval
        now = time.monotonic()
        if not interval or now < self._next_status or self._closing is not None:
            return
        self._next_status = now + interval
        expected, current = len(self._workers), len(self._table)
        self._emit(
            StatusEvent,
            expected_size=expected,
            current_size=current,
            state=pool_state(expected, current),
        )

    def _autoscale(self) -> None:
        """Size the pool from the peak RPCs in flight since the last check
        (the rule: ``_policy.autoscale``)."""
        config = self._config
        now = time.monotonic()
        if not config.autoscale or now < self._next_autoscale or self._closing is not None:
            return
        self._next_autoscale = now + config.autoscale_interval
        channels = (*self._table.snapshot(), *(r.channel for r in self._retiring))
        # Per-channel peaks summed, as gax-java does: an upper bound of the pool's peak.
        peak = sum(c._counter.take_peak() for c in channels if c._counter is not None)
        high = config.max_size or config.size
        size = len(self._workers)
        decision = autoscale(
            size,
            peak,
            config.min_size,
            high,
            config.min_rpcs_per_channel,
            config.max_rpcs_per_channel,
            config.max_resize_delta,
        )
        target, min_channels, max_channels = (
            decision.target,
            decision.min_channels,
            decision.max_channels,
        )
        if target != size:
            self._resize(target)
            logger.info(
                "pool %s: autoscale %d -> %d (peak %d in flight)", self._name, size, target, peak
            )
        self._emit(
            AutoscaleEvent,
            peak=peak,
            min_channels=min_channels,
            max_channels=max_channels,
            previous_size=size,
            new_size=target,
        )
        ready = max(1, len(self._table))
        if target >= high and peak / ready >= 0.8 * config.stream_limit:
            logger.warning(
                "pool %s: at max_size %d with %.0f RPCs per channel, near the server's "
                "stream limit (%d): RPCs will queue",
                self._name,
                high,
                peak / ready,
                config.stream_limit,
            )
            self._emit(
                StreamLimitEvent,
                per_channel=peak / ready,
                stream_limit=config.stream_limit,
                size=target,
            )
