"""What readers see: one frozen PoolState, replaced whole by the writer.

Everything ``get_channel``, ``status()``, ``stats()``, the exporters and the CLI
read lives in one object published by one reference swap, so no reader can see
half of a change (the channels of one layout with the totals of another).
"""

from __future__ import annotations

import enum
import itertools
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Generic, Literal, TypeVar

__all__ = [
    "Ejection",
    "PoolHealth",
    "PoolState",
    "SlotStatus",
    "SlotView",
    "Totals",
    "bind_picker",
    "health_of",
]

C = TypeVar("C")  # the channel type (PooledChannel)
Pick = Callable[[Sequence[C]], C]
# What status() says of a pool as a whole.
PoolHealth = Literal["healthy", "degraded", "down"]


def health_of(expected: int, current: int) -> PoolHealth:
    """All slots ready: healthy; some: degraded; none: down."""
    if current <= 0:
        return "down"
    return "healthy" if current >= expected else "degraded"


class SlotStatus(enum.Enum):
    """Where a slot is (``SlotStats.state`` shows the value)."""

    CONNECTING = "connecting"  # building a channel, waiting for READY
    READY = "ready"  # its channel is in rotation
    UNHEALTHY = "unhealthy"  # connected, health check not SERVING: out of rotation
    RECONNECTING = "reconnecting"  # gRPC reconnects under a channel still in rotation
    BACKOFF = "backoff"  # an attempt failed: waiting before the next


@dataclass(frozen=True, slots=True)
class SlotView(Generic[C]):
    """What the writer knows of a slot."""

    slot: int
    state: SlotStatus = SlotStatus.CONNECTING
    channel: C | None = None
    connected_since: float | None = None
    connects: int = 0
    failures: int = 0
    last_error: str | None = None
    disconnects: int = 0
    connect_failures: int = 0
    retry_delay: float | None = None
    health: str | None = None
    address: str | None = None  # spreading: the backend it connects to (_spread.py)


@dataclass(frozen=True, slots=True)
class Ejection:
    """Outlier ejection's record of one backend (a target, or an address when spreading).

    ejected: out of the pick now. ejections: times it was ejected in all.
    multiplier: ejections in a row (the next lasts base time x multiplier + 1).
    until: ``time.monotonic()`` when the current ejection ends (None: not ejected).
    ejected_for: seconds the last ejection lasts (or lasted).
    """

    backend: str
    ejected: bool = False
    ejections: int = 0
    multiplier: int = 0
    until: float | None = None
    ejected_for: float = 0.0


@dataclass(frozen=True, slots=True)
class Totals:
    """Pool-lifetime counters; they never decrease."""

    connects: int = 0
    disconnects: int = 0
    connect_failures: int = 0
    rpcs_closed: int = 0  # RPCs of channels already closed (open ones count their own)


@dataclass(frozen=True, slots=True)
class PoolState(Generic[C]):
    """One published state of a pool.

    channels: the ready channels in rotation. pick: a picker bound to them (None
    when there is none: readers then take the slow path). expected: slots
    configured. views: one SlotView per slot, by slot. retired: channels out of
    rotation, not closed yet (they still count their RPCs). addresses: the
    backends the pool spreads over (empty when it does not). closing: the pool
    is closing (nothing is handed out). forked: inherited by a forked child, whose
    first use rebuilds the pool. superseded: set once a newer state is published,
    which wakes whoever waits on this generation. ejections: outlier ejection's
    record of each backend it ever ejected (its channels are not in ``channels``
    while ejected).
    """

    channels: tuple[C, ...] = ()
    pick: Callable[[], C] | None = None
    expected: int = 0
    views: tuple[SlotView[C], ...] = ()
    retired: tuple[C, ...] = ()
    totals: Totals = Totals()
    addresses: tuple[str, ...] = ()
    closing: bool = False
    forked: bool = False
    superseded: threading.Event = field(default_factory=threading.Event, compare=False)
    ejections: tuple[Ejection, ...] = ()


def bind_picker(channels: tuple[C, ...], pick: Pick[C] | None) -> Callable[[], C] | None:
    """The reader's picker over ``channels``: ``pick`` None is round robin through a
    C-level cycle (one C call, atomic under the GIL); None when there is no channel."""
    if not channels:
        return None
    if pick is None:
        return itertools.cycle(channels).__next__
    return partial(pick, channels)
