"""The writer's side of what workers report (a channel ready or lost, progress,
health): how each report changes the slot's view, the layout and the totals.
A part of the writer (mixed into ``Writer``): it runs on the writer thread only."""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ._channel import PooledChannel
from ._commands import Close, HealthResult, Lost, Progress
from ._config import PoolConfig
from ._events import (
    ChannelConnectedEvent,
    ChannelDisconnectedEvent,
    ConnectionFailedEvent,
    HealthCheckEvent,
    ReconnectScheduledEvent,
)
from ._redact import redact_text
from ._slots import SlotTable
from ._state import SlotStatus, SlotView, Totals

if TYPE_CHECKING:
    from ._spread import Spreader

__all__ = ["SlotReports"]

logger = logging.getLogger("grpc_pool._writer")


class SlotReports:
    """Handlers of ``Register``, ``Lost``, ``Progress`` and ``HealthResult``."""

    _name: str
    _config: PoolConfig
    _closing: Close | None
    _table: SlotTable[int, PooledChannel]
    _views: dict[int, SlotView]
    _totals: Totals
    _secrets: tuple[str, ...]
    _told_no_health: bool
    _spread: Spreader

    if TYPE_CHECKING:

        def _retire(self, channel: PooledChannel, published: bool = True) -> None: ...
        def _publish(self) -> None: ...
        def _emit(self, kind: Any, **fields: Any) -> None: ...

    def _register(self, slot: int, channel: PooledChannel, duration: float, serving: bool) -> None:
        if self._closing is not None:
            self._retire(channel, published=False)
            return
        view = self._views[slot]
        old = view.channel  # in rotation, or kept out of it while not serving
        if serving:
            self._table.register(slot, channel)
        else:
            self._table.unregister(slot)
        if old is not None and old is not channel:
            self._retire(old)
        self._totals = replace(self._totals, connects=self._totals.connects + 1)
        self._emit(
            ChannelConnectedEvent,
            slot=slot,
            channel_id=channel.channel_id,
            duration=duration,
            reconnect=view.connects > 0,
        )
        self._views[slot] = replace(
            view,
            state=SlotStatus.READY if serving else SlotStatus.UNHEALTHY,
            channel=channel,
            connected_since=time.monotonic(),
            connects=view.connects + 1,
            failures=0,
            last_error=view.last_error if serving else f"health check: {view.health}",
        )
        logger.info(
            "pool %s slot %d: %s (%s)",
            self._name,
            slot,
            "ready" if serving else "connected, not serving: out of rotation",
            channel.channel_id,
        )
        self._publish()

    def _lost(self, command: Lost) -> None:
        slot, channel = command.slot, command.channel
        reason = redact_text(command.reason, self._secrets)
        if self._views[slot].channel is not channel:
            return
        self._table.unregister(slot)
        self._retire(channel)
        self._spread.poke()  # the backends may have changed
        view = self._disconnected(slot, channel, reason)
        self._views[slot] = replace(
            view,
            state=SlotStatus.CONNECTING,
            channel=None,
            connected_since=None,
            last_error=reason,
            retry_delay=command.retry_in,
        )
        self._publish()
        self._emit(
            ReconnectScheduledEvent, slot=slot, delay=command.retry_in, attempt=1, reason=reason
        )

    def _disconnected(self, slot: int, channel: PooledChannel, reason: str) -> SlotView:
        """Count and report a lost connection once: when a ready slot stops being ready."""
        view = self._views[slot]
        if view.state not in (SlotStatus.READY, SlotStatus.UNHEALTHY):  # counted already
            return view
        since = view.connected_since
        self._totals = replace(self._totals, disconnects=self._totals.disconnects + 1)
        self._emit(
            ChannelDisconnectedEvent,
            slot=slot,
            channel_id=channel.channel_id,
            reason=reason,
            connected_for=time.monotonic() - since if since is not None else 0.0,
        )
        view = replace(view, disconnects=view.disconnects + 1, last_error=reason)
        self._views[slot] = view
        return view

    def _health(self, command: HealthResult) -> None:
        """A check answered: the connection stays; the slot leaves the rotation while
        not healthy and returns once healthy (no reconnect, no backoff)."""
        slot, channel, status = command.slot, command.channel, command.status
        view = replace(self._views[slot], health=status)
        if view.channel is channel:
            if command.healthy and view.state is SlotStatus.UNHEALTHY:
                self._table.register(slot, channel)
                view = replace(view, state=SlotStatus.READY)
                logger.info("pool %s slot %d: serving again (%s)", self._name, slot, status)
            elif not command.healthy and command.answered and view.state is SlotStatus.READY:
                self._table.unregister(slot)
                error = f"health check: {status}"
                view = replace(view, state=SlotStatus.UNHEALTHY, last_error=error)
                logger.info("pool %s slot %d: %s, out of rotation", self._name, slot, error)
        self._views[slot] = view
        if status == "UNIMPLEMENTED" and not self._told_no_health:
            self._told_no_health = True
            level = logging.DEBUG if self._config.suppress_connection_errors else logging.WARNING
            logger.log(
                level,
                "pool %s: server has no grpc.health.v1.Health service; channels count as healthy",
                self._name,
            )
        self._publish()
        self._emit(
            HealthCheckEvent,
            slot=command.slot,
            channel_id=command.channel.channel_id,
            status=command.status,
            healthy=command.healthy,
            duration=command.duration,
        )

    def _progress(self, command: Progress) -> None:
        view = self._views[command.slot]
        if command.state is SlotStatus.BACKOFF:
            error = redact_text(command.error or "unknown", self._secrets)
            delay = command.delay or 0.0
            view = replace(
                view,
                state=SlotStatus.BACKOFF,
                failures=view.failures + 1,
                connect_failures=view.connect_failures + 1,
                last_error=error,
                retry_delay=delay,
            )
            self._totals = replace(self._totals, connect_failures=self._totals.connect_failures + 1)
            self._spread.poke()
            self._emit(
                ConnectionFailedEvent, slot=command.slot, error=error, failures=view.failures
            )
            self._emit(
                ReconnectScheduledEvent,
                slot=command.slot,
                delay=delay,
                attempt=view.failures + 1,
                reason=error,
            )
        elif command.state is SlotStatus.RECONNECTING and view.channel is not None:
            # The connection under a published channel closed; it stays in rotation
            # while it reconnects (RPCs on it wait or fail fast as gRPC decides).
            reason = redact_text(command.error or "closed", self._secrets)
            view = self._disconnected(command.slot, view.channel, reason)
            view = replace(view, state=SlotStatus.RECONNECTING)
            # gRPC reconnects by itself, at once: one attempt, as after any disconnect.
            self._emit(
                ReconnectScheduledEvent, slot=command.slot, delay=0.0, attempt=1, reason=reason
            )
        else:
            view = replace(view, state=command.state)
        self._views[command.slot] = view
        self._publish()
