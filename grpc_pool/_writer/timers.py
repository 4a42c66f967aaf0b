"""The writer's timers: the periodic status event and autoscaling (its rule is
``policy.autoscale``). Each tick returns what follows; the writer acts on it."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from .._channel.pooled import PooledChannel
from .._config.config import PoolConfig
from .._config.scaling import connections_per_channel
from .._contract.events import AutoscaleEvent, Dispatcher, StatusEvent, StreamLimitEvent
from .._contract.state import health_of
from .layout import NOTHING, Effects
from .policy import autoscale

__all__ = ["Timers", "channel_stream_limit", "near_stream_limit"]

logger = logging.getLogger(__name__)


def channel_stream_limit(stream_limit: int, connections: int) -> int:
    """Streams one channel carries before RPCs queue: the server's per-connection
    limit times the connections it may open (gRFC A105 connectionScaling, else 1)."""
    return stream_limit * max(1, connections)


def near_stream_limit(per_channel: float, limit: int) -> bool:
    """The warning's rule: channels carry 80% of what one channel can hold."""
    return per_channel >= 0.8 * limit


class Timers:
    """When the next status event and autoscale check are due, and what they decide."""

    def __init__(
        self, config: PoolConfig, name: str, events: Dispatcher, wake: Callable[[], None]
    ) -> None:
        self._config = config
        self._name = name
        # The status event is for listeners only: with none, its timer does not wake
        # the writer (an idle pool's CPU); adding one wakes it to count the timer.
        self._events = events
        events.on_add = wake
        # With connectionScaling K a channel holds K x stream_limit streams before
        # RPCs queue: warn near that, not near one connection's limit.
        self._limit = channel_stream_limit(
            config.stream_limit, connections_per_channel(config.options)
        )
        now = time.monotonic()
        self._next_status = now + config.status_interval
        self._next_autoscale = now + config.autoscale_interval

    def deadlines(self) -> list[float]:
        found = []
        if self._config.status_interval and self._events.deliveries:
            found.append(self._next_status)
        if self._config.autoscale:
            found.append(self._next_autoscale)
        return found

    def status(self, expected: int, current: int) -> Effects:
        """The periodic status event, with the sizes as they are now (not as configured)."""
        interval = self._config.status_interval
        now = time.monotonic()
        if not interval or now < self._next_status or not self._events.deliveries:
            return NOTHING
        self._next_status = now + interval
        fields = {
            "expected_size": expected,
            "current_size": current,
            "state": health_of(expected, current),
        }
        return Effects(events=((StatusEvent, fields),))

    def autoscale(
        self, size: int, ready: int, channels: Iterable[PooledChannel]
    ) -> tuple[int | None, Effects]:
        """The new size from the peak RPCs in flight since the last check (None: not
        due), with its events. Peaks per channel are summed, as gax-java does: an
        upper bound of the pool's peak."""
        config = self._config
        now = time.monotonic()
        if not config.autoscale or now < self._next_autoscale:
            return None, NOTHING
        self._next_autoscale = now + config.autoscale_interval
        peak = sum(c._counter.take_peak() for c in channels if c._counter is not None)
        high = config.max_size or config.size
        decision = autoscale(
            size,
            peak,
            config.min_size,
            high,
            config.min_rpcs_per_channel,
            config.max_rpcs_per_channel,
            config.max_resize_delta,
        )
        target = decision.target
        if target != size:
            logger.info(
                "pool %s: autoscale %d -> %d (peak %d in flight)", self._name, size, target, peak
            )
        events: list[tuple[Any, dict[str, Any]]] = [
            (
                AutoscaleEvent,
                {
                    "peak": peak,
                    "min_channels": decision.min_channels,
                    "max_channels": decision.max_channels,
                    "previous_size": size,
                    "new_size": target,
                },
            )
        ]
        per_channel = peak / max(1, ready)
        if target >= high and near_stream_limit(per_channel, self._limit):
            logger.warning(
                "pool %s: at max_size %d with %.0f RPCs per channel, near the server's "
                "stream limit (%d per channel): RPCs will queue",
                self._name,
                high,
                per_channel,
                self._limit,
            )
            fields = {
                "per_channel": per_channel,
                "stream_limit": self._limit,
                "size": target,
            }
            events.append((StreamLimitEvent, fields))
        return target, Effects(events=tuple(events))
