"""The writer's layout: the slot table, each slot's view and the totals, and how
each worker report changes them. Handlers return what follows (``Effects``: the
layout changed, channels to retire or discard, events to emit, a re-resolution);
the writer's loop acts on it, once per batch. Writer thread only."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from typing import Any

from .._base.redact import redact_text
from .._channel.pooled import PooledChannel
from .._config.config import PoolConfig
from .._contract.commands import HealthResult, Lost, Progress, Register
from .._contract.events import (
    ChannelConnectedEvent,
    ChannelDisconnectedEvent,
    ConnectionFailedEvent,
    HealthCheckEvent,
    ReconnectScheduledEvent,
)
from .._contract.state import SlotStatus, SlotView, Totals
from .policy import victims
from .slots import SlotTable

__all__ = ["NOTHING", "Effects", "Layout"]

logger = logging.getLogger(__name__)

View = SlotView[PooledChannel]


@dataclass(frozen=True, slots=True)
class Effects:
    """What a handler decided, for the writer's loop to do.

    changed: the layout changed (publish). retire: published channels leaving the
    rotation (closed after the grace). discard: channels never published (closed
    now). events: (event type, fields) to emit after the publish. poke: resolve
    the target again soon. moves: (slot, address) to send to the slot's worker now.
    """

    changed: bool = False
    retire: tuple[PooledChannel, ...] = ()
    discard: tuple[PooledChannel, ...] = ()
    events: tuple[tuple[Any, dict[str, Any]], ...] = ()
    poke: bool = False
    moves: tuple[tuple[int, str | None], ...] = ()

    def __add__(self, other: Effects) -> Effects:
        if other is NOTHING:
            return self
        if self is NOTHING:
            return other
        return Effects(
            self.changed or other.changed,
            self.retire + other.retire,
            self.discard + other.discard,
            self.events + other.events,
            self.poke or other.poke,
            self.moves + other.moves,
        )


NOTHING = Effects()


@dataclass(slots=True)
class _Out:
    """A handler's effects while it runs."""

    retire: list[PooledChannel] = field(default_factory=list)
    events: list[tuple[Any, dict[str, Any]]] = field(default_factory=list)
    poke: bool = False

    def emit(self, kind: Any, **fields: Any) -> None:
        self.events.append((kind, fields))

    def effects(self) -> Effects:
        return Effects(True, tuple(self.retire), (), tuple(self.events), self.poke)


# Off only to measure the old rule (benchmarks/test_rotation.py): a reconnecting
# channel stayed in rotation until its reconnect failed.
LEAVE_WHILE_RECONNECTING = True


class Layout:
    """The slot table (ready channels, contiguous), the views and the totals."""

    def __init__(self, config: PoolConfig, name: str, secrets: tuple[str, ...]) -> None:
        self._config = config
        self._name = name
        # Error texts (grpcio's included) name the target: its user-info is hidden.
        self._secrets = secrets
        self._table: SlotTable[int, PooledChannel] = SlotTable()
        self._views: dict[int, View] = {}
        self.totals = Totals()
        self._told_no_health = False  # UNIMPLEMENTED is logged once per pool

    # -- what the writer reads ---------------------------------------------------
    def channels(self) -> tuple[PooledChannel, ...]:
        """The ready channels in rotation, in slot-table order."""
        return self._table.snapshot()

    def ready(self) -> int:
        return len(self._table)

    def views(self) -> tuple[View, ...]:
        return tuple(self._views[s] for s in sorted(self._views))

    def channel_of(self, slot: int) -> PooledChannel | None:
        """The slot's channel, in rotation or kept out of it."""
        view = self._views.get(slot)
        return None if view is None else view.channel

    def victims(self, slots: list[int], count: int) -> list[int]:
        """Slots to stop (the rule: ``policy.victims``)."""
        loads: dict[int, int | None] = {}
        for slot in slots:
            channel = self._table.get(slot)
            loads[slot] = None if channel is None else channel.load
        return victims(loads, count)

    # -- changes -------------------------------------------------------------------
    def add_slot(self, slot: int) -> None:
        self._views[slot] = SlotView(slot)

    def remove_slot(self, slot: int) -> Effects:
        """The slot goes: its channel (in rotation or not) retires."""
        self._table.unregister(slot)
        channel = self._views.pop(slot).channel
        return Effects(True, retire=(channel,) if channel is not None else ())

    def place(self, slot: int, address: str | None) -> None:
        """Spreading: the backend the slot connects to from now on."""
        if slot in self._views:
            self._views[slot] = replace(self._views[slot], address=address)

    def count_closed(self, rpcs: int) -> None:
        """A retired channel closed: its RPCs move into the totals."""
        self.totals = replace(self.totals, rpcs_closed=self.totals.rpcs_closed + rpcs)

    def register(self, command: Register[PooledChannel], closing: bool) -> Effects:
        slot, channel, duration, serving = (
            command.slot,
            command.channel,
            command.duration,
            command.serving,
        )
        out = _Out()
        if closing:
            return Effects(discard=(channel,))
        view = self._views[slot]
        old = view.channel  # in rotation, or kept out of it while not serving
        if serving:
            self._table.register(slot, channel)
        else:
            self._table.unregister(slot)
        if old is not None and old is not channel:
            out.retire.append(old)
        self.totals = replace(self.totals, connects=self.totals.connects + 1)
        out.emit(
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
        return out.effects()

    def lost(self, command: Lost[PooledChannel]) -> Effects:
        out = _Out()
        slot, channel = command.slot, command.channel
        reason = redact_text(command.reason, self._secrets)
        if self._views[slot].channel is not channel:
            return NOTHING
        self._table.unregister(slot)
        if not len(self._table):  # none left: reconnecting ones are better than none
            for other in self._views.values():
                reconnecting = other.state is SlotStatus.RECONNECTING
                if reconnecting and other.slot != slot and other.channel is not None:
                    self._table.register(other.slot, other.channel)
        out.retire.append(channel)
        out.poke = True  # the backends may have changed
        view = self._disconnected(slot, channel, reason, out)
        self._views[slot] = replace(
            view,
            state=SlotStatus.CONNECTING,
            channel=None,
            connected_since=None,
            last_error=reason,
            retry_delay=command.retry_in,
        )
        out.emit(
            ReconnectScheduledEvent, slot=slot, delay=command.retry_in, attempt=1, reason=reason
        )
        return out.effects()

    def _disconnected(
        self, slot: int, channel: PooledChannel, reason: str, out: _Out
    ) -> SlotView[PooledChannel]:
        """Count and report a lost connection once: when a ready slot stops being ready."""
        view = self._views[slot]
        if view.state not in (SlotStatus.READY, SlotStatus.UNHEALTHY):  # counted already
            return view
        since = view.connected_since
        self.totals = replace(self.totals, disconnects=self.totals.disconnects + 1)
        out.emit(
            ChannelDisconnectedEvent,
            slot=slot,
            channel_id=channel.channel_id,
            reason=reason,
            connected_for=time.monotonic() - since if since is not None else 0.0,
        )
        view = replace(view, disconnects=view.disconnects + 1, last_error=reason)
        self._views[slot] = view
        return view

    def health(self, command: HealthResult[PooledChannel]) -> Effects:
        """A check answered: the connection stays; the slot leaves the rotation while
        not healthy and returns once healthy (no reconnect, no backoff)."""
        out = _Out()
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
        out.emit(
            HealthCheckEvent,
            slot=command.slot,
            channel_id=command.channel.channel_id,
            status=command.status,
            healthy=command.healthy,
            duration=command.duration,
        )
        return out.effects()

    def progress(self, command: Progress) -> Effects:
        out = _Out()
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
            self.totals = replace(self.totals, connect_failures=self.totals.connect_failures + 1)
            out.poke = True
            out.emit(ConnectionFailedEvent, slot=command.slot, error=error, failures=view.failures)
            out.emit(
                ReconnectScheduledEvent,
                slot=command.slot,
                delay=delay,
                attempt=view.failures + 1,
                reason=error,
            )
        elif command.state is SlotStatus.RECONNECTING and view.channel is not None:
            # The connection under a published channel closed (GOAWAY, reset, idle):
            # it leaves the rotation while another channel is ready (the READY
            # Register puts it back); the last one stays (RPCs wait or fail fast
            # as gRPC decides).
            reason = redact_text(command.error or "closed", self._secrets)
            table = self._table
            if LEAVE_WHILE_RECONNECTING and table.get(command.slot) is not None and len(table) > 1:
                table.unregister(command.slot)
            view = self._disconnected(command.slot, view.channel, reason, out)
            view = replace(view, state=SlotStatus.RECONNECTING)
            # gRPC reconnects by itself, at once: one attempt, as after any disconnect.
            out.emit(
                ReconnectScheduledEvent, slot=command.slot, delay=0.0, attempt=1, reason=reason
            )
        else:
            view = replace(view, state=command.state)
        self._views[command.slot] = view
        return out.effects()
