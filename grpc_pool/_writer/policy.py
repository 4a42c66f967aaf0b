"""The writer's decisions as pure functions: how far to autoscale, which slots to stop."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["Autoscale", "autoscale", "victims"]


@dataclass(frozen=True, slots=True)
class Autoscale:
    """One autoscale decision: the band [min_channels, max_channels] and the new size."""

    min_channels: int
    max_channels: int
    target: int


def autoscale(
    size: int,
    peak: int,
    min_size: int,
    max_size: int,
    min_rpcs_per_channel: int,
    max_rpcs_per_channel: int,
    max_resize_delta: int,
) -> Autoscale:
    """gax-java's ChannelPool rule: between ceil(peak / max_rpcs) and ceil(peak /
    min_rpcs) channels (clamped to [min_size, max_size]) nothing changes, the
    hysteresis band; outside it the size moves toward the band by at most
    ``max_resize_delta``, and never leaves [min_size, max_size]."""
    low = min(max_size, max(min_size, math.ceil(peak / max_rpcs_per_channel)))
    high = min(max_size, max(min_size, math.ceil(peak / min_rpcs_per_channel)))
    target = size
    if size < low:
        target = min(size + max_resize_delta, low)
    elif size > high:
        target = max(size - max_resize_delta, high)
    return Autoscale(low, high, target)


def victims(loads: Mapping[int, int | None], count: int) -> list[int]:
    """The ``count`` slots to stop, given each slot's load (None: not ready): not
    ready first, then the least loaded, then the newest (highest slot)."""

    def cost(slot: int) -> tuple[int, int, int]:
        load = loads[slot]
        return (0, 0, -slot) if load is None else (1, load, -slot)

    return sorted(loads, key=cost)[:count]
