"""Events: frozen payloads, and the dispatcher that hands them to listeners.

Each listener gets its own bounded queue and thread: a listener that raises is
logged, one that blocks only fills its own queue (further events for it are
dropped and counted), and neither stalls the writer or other listeners.
A listener may call back into the pool (``close()``, ``remove_listener()``,
``stats()``, scaling): its own thread is never joined from inside it, it ends
once the callback returns.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from .._base.errors import InvalidConfig

__all__ = [
    "SCALE_EVENTS",
    "AutoscaleEvent",
    "BackendEjectedEvent",
    "BackendUnejectedEvent",
    "ChannelConnectedEvent",
    "ChannelDisconnectedEvent",
    "ConnectionFailedEvent",
    "Dispatcher",
    "GetChannelEvent",
    "HealthCheckEvent",
    "Listener",
    "PoolClosedEvent",
    "PoolEvent",
    "PoolStartedEvent",
    "ReconnectScheduledEvent",
    "ResizeEvent",
    "ResolvedEvent",
    "ScaleDownEvent",
    "ScaleEvent",
    "ScaleUpEvent",
    "StatusEvent",
    "StreamLimitEvent",
]

logger = logging.getLogger(__name__)

# Events a slow listener may have pending before newer ones are dropped for it.
QUEUE_SIZE = 10_000
_STOP_TIMEOUT = 5.0


@dataclass(frozen=True, slots=True, kw_only=True)
class PoolEvent:
    """Base of every event: ``name`` (stable), ``pool`` (pool name), ``at`` (time.monotonic())."""

    name: ClassVar[str] = "event"
    pool: str
    at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class PoolStartedEvent(PoolEvent):
    name: ClassVar[str] = "pool_started"
    size: int
    target: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PoolClosedEvent(PoolEvent):
    name: ClassVar[str] = "pool_closed"
    grace: float


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelConnectedEvent(PoolEvent):
    """A slot's channel became READY; ``duration``: seconds from attempt start to READY."""

    name: ClassVar[str] = "channel_connected"
    slot: int
    channel_id: str
    duration: float
    reconnect: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionFailedEvent(PoolEvent):
    """A connection attempt failed; ``failures``: in a row, this one included."""

    name: ClassVar[str] = "connection_failed"
    slot: int
    error: str
    failures: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelDisconnectedEvent(PoolEvent):
    """A ready channel left the rotation; ``connected_for`` in seconds."""

    name: ClassVar[str] = "channel_disconnected"
    slot: int
    channel_id: str
    reason: str
    connected_for: float


@dataclass(frozen=True, slots=True, kw_only=True)
class ReconnectScheduledEvent(PoolEvent):
    """The slot waits ``delay`` seconds before attempt number ``attempt``."""

    name: ClassVar[str] = "reconnect_scheduled"
    slot: int
    delay: float
    attempt: int
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class HealthCheckEvent(PoolEvent):
    """A health check over a pooled channel: ``status`` is "SERVING", "NOT_SERVING", an error."""

    name: ClassVar[str] = "health_check"
    slot: int
    channel_id: str
    status: str
    healthy: bool
    duration: float


@dataclass(frozen=True, slots=True, kw_only=True)
class ResolvedEvent(PoolEvent):
    """The target's addresses changed (or were found first): ``addresses`` now,
    ``added`` and ``removed`` since the last answer. A failed or empty resolution
    also emits one, with ``error`` set, the addresses kept and nothing added or removed."""

    name: ClassVar[str] = "resolved"
    addresses: tuple[str, ...]
    added: tuple[str, ...]
    removed: tuple[str, ...]
    error: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class BackendEjectedEvent(PoolEvent):
    """Outlier ejection took ``backend`` (every channel on it) out of the pick for
    ``duration`` seconds, its ``ejections``-th time; ``reason`` with the figures;
    ``answered``/``failed``: its calls in the last interval (0 when judged on
    failures in a row between intervals)."""

    name: ClassVar[str] = "backend_ejected"
    backend: str
    reason: str
    duration: float
    ejections: int
    answered: int
    failed: int


@dataclass(frozen=True, slots=True, kw_only=True)
class BackendUnejectedEvent(PoolEvent):
    """``backend`` is back in the pick (its ejection time is over)."""

    name: ClassVar[str] = "backend_unejected"
    backend: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ScaleEvent(PoolEvent):
    """Base of the scaling events: ``ScaleUpEvent``, ``ScaleDownEvent``, ``ResizeEvent``.

    requested: the argument of the call (n, or the size); done: slots started
    (+) or stopped (-); new_size: expected size after; duration: seconds taken.
    """

    requested: int
    done: int
    new_size: int
    duration: float


@dataclass(frozen=True, slots=True, kw_only=True)
class ScaleUpEvent(ScaleEvent):
    name: ClassVar[str] = "scale_up"


@dataclass(frozen=True, slots=True, kw_only=True)
class ScaleDownEvent(ScaleEvent):
    name: ClassVar[str] = "scale_down"


@dataclass(frozen=True, slots=True, kw_only=True)
class ResizeEvent(ScaleEvent):
    name: ClassVar[str] = "resize"


SCALE_EVENTS: dict[str, type[ScaleEvent]] = {
    "scale_up": ScaleUpEvent,
    "scale_down": ScaleDownEvent,
    "resize": ResizeEvent,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class StatusEvent(PoolEvent):
    """Periodic status, sizes as they are now."""

    name: ClassVar[str] = "status"
    expected_size: int
    current_size: int
    state: str


@dataclass(frozen=True, slots=True, kw_only=True)
class GetChannelEvent(PoolEvent):
    """A sampled get_channel(): ``available`` ready channels, the slot picked."""

    name: ClassVar[str] = "get_channel"
    available: int
    slot: int


@dataclass(frozen=True, slots=True, kw_only=True)
class AutoscaleEvent(PoolEvent):
    """An autoscale check: the peak RPCs in flight since the last one, the band of
    sizes that fits it (after clamping to min/max size) and the sizes before/after."""

    name: ClassVar[str] = "autoscale"
    peak: int
    min_channels: int
    max_channels: int
    previous_size: int
    new_size: int


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamLimitEvent(PoolEvent):
    """At max_size, channels carry at least 80% of the server's stream limit.

    ``stream_limit`` is per channel: the ``stream_limit`` option, times K when the
    pool's options carry gRFC A105 connectionScaling K (grpcio >= 1.84)."""

    name: ClassVar[str] = "stream_limit_near"
    per_channel: float
    stream_limit: int
    size: int


Listener = Callable[[PoolEvent], None]


class _Delivery:
    """One listener's queue and thread."""

    def __init__(self, listener: Listener, pool_name: str, number: int) -> None:
        self.listener = listener
        self.queue: queue.Queue[PoolEvent | None] = queue.Queue(QUEUE_SIZE)
        self.dropped = 0
        self._ending = False  # stopped from inside the listener, with its queue full
        self.thread = threading.Thread(
            target=self._run, name=f"grpc_pool-listener-{pool_name}-{number}", daemon=True
        )
        self.thread.start()

    def offer(self, event: PoolEvent) -> None:
        try:
            self.queue.put_nowait(event)
        except queue.Full:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                logger.warning(
                    "listener %r is not keeping up: %d events dropped so far",
                    self.listener,
                    self.dropped,
                )

    def _run(self) -> None:
        while not self._ending:
            event = self.queue.get()
            if event is None:
                return
            try:
                self.listener(event)
            except Exception:
                logger.exception("listener %r raised on %s; going on", self.listener, event.name)

    def stop(self, deadline: float) -> None:
        """Deliver what is queued, then end the thread; join it unless this is it."""
        if threading.current_thread() is self.thread:
            # Called by the listener itself (close() or remove_listener() in a
            # callback): a thread cannot join itself. It ends once it returns.
            try:
                self.queue.put_nowait(None)
            except queue.Full:
                self._ending = True
            return
        try:
            self.queue.put(None, timeout=max(0.0, deadline - time.monotonic()))
        except queue.Full:
            logger.warning(
                "listener %r: %d events not delivered", self.listener, self.queue.qsize()
            )
        self.thread.join(max(0.0, deadline - time.monotonic()))
        if self.thread.is_alive():
            logger.warning("listener thread %s did not stop (listener blocked)", self.thread.name)


class Dispatcher:
    """Fans events out to listeners. ``emit`` never blocks and is cheap when nobody listens."""

    def __init__(self, pool_name: str) -> None:
        self._pool_name = pool_name
        self._lock = threading.Lock()
        self._numbers = 0
        # Replaced, never mutated: emit() reads it without a lock.
        self.deliveries: tuple[_Delivery, ...] = ()
        self.on_add: Callable[[], None] | None = None  # the writer's wake-up

    def add(self, listener: Listener) -> None:
        if not callable(listener):
            raise InvalidConfig(f"listener={listener!r} is not allowed: expected a callable")
        with self._lock:
            self._numbers += 1
            delivery = _Delivery(listener, self._pool_name, self._numbers)
            self.deliveries = (*self.deliveries, delivery)
        if self.on_add is not None:
            self.on_add()

    def remove(self, listener: Listener) -> bool:
        with self._lock:
            gone = [d for d in self.deliveries if d.listener == listener]
            if not gone:
                return False
            self.deliveries = tuple(d for d in self.deliveries if d not in gone)
        deadline = time.monotonic() + _STOP_TIMEOUT
        for delivery in gone:
            delivery.stop(deadline)
        return True

    def emit(self, event: PoolEvent) -> None:
        for delivery in self.deliveries:
            delivery.offer(event)

    @property
    def dropped(self) -> int:
        return sum(d.dropped for d in self.deliveries)

    def close(self) -> None:
        """Deliver what is queued (bounded), then stop every listener thread."""
        with self._lock:
            deliveries, self.deliveries = self.deliveries, ()
        deadline = time.monotonic() + _STOP_TIMEOUT
        for delivery in deliveries:
            try:
                delivery.stop(deadline)
            except Exception:  # never leave the remaining listeners running
                logger.exception("stopping listener %r failed", delivery.listener)
