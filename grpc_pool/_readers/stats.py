"""Frozen snapshots a pool reports: status, per-slot stats."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from .._contract.state import PoolHealth

__all__ = ["BackendStats", "EjectionStats", "PoolStats", "PoolStatus", "SlotStats", "backend_stats"]

SlotState = Literal["connecting", "ready", "unhealthy", "reconnecting", "backoff"]


@dataclass(frozen=True, slots=True)
class PoolStatus:
    """expected_size: slots configured now; current_size: ready channels in rotation.

    state: "healthy" (all ready), "degraded" (some) or "down" (none).
    """

    expected_size: int
    current_size: int
    state: PoolHealth


@dataclass(frozen=True, slots=True)
class SlotStats:
    """One slot (one worker, one connection at a time).

    slot: stable id of the slot (also in its thread name).
    target: the target this slot connects to (slot i: targets[i % len(targets)]).
    index: position in the rotation when ready, else None.
    state: "connecting", "ready", "unhealthy" (connected, health check not
        SERVING: out of rotation, checked again), "reconnecting" (lost, asking again),
        or "backoff" (waiting before the next attempt).
    connected_since: ``time.monotonic()`` when the current channel became ready
        (for durations in code; people read ``connected_for`` or ``connected_at``).
    connects: how many times this slot became ready; reconnects = connects - 1.
    failures: failed connection attempts in a row now.
    disconnects: ready channels of this slot that were lost.
    connect_failures: failed connection attempts in all.
    retry_delay: the last backoff delay chosen (seconds), None before any.
    health: the last health check's status ("SERVING", "NOT_SERVING", an error
        code name), None when health checks are off or none ran yet.
    last_error: why the last attempt failed or the last connection was lost.
    in_flight / rpcs_total: RPCs on the current channel (None when not counted).
    connected_for: seconds the current channel has been ready, when ``stats()`` ran.
    connected_at: when it became ready, wall-clock (``time.time()``, Unix seconds).
    Both None while not connected.
    address: the backend address this slot connects to when the pool spreads
        (``PoolConfig.spread``), else None (the target goes to grpcio as given).
    connections: TCP connections the current channel holds now, read from grpcio's
        channelz when ``stats()`` ran; only known when ``options`` carry gRFC A105
        connectionScaling with K > 1 (grpcio >= 1.84) and channelz is on, else None.
    """

    slot: int
    target: str
    index: int | None
    state: SlotState
    channel_id: str | None
    connected_since: float | None
    connects: int
    reconnects: int
    failures: int
    disconnects: int
    connect_failures: int
    retry_delay: float | None
    health: str | None
    last_error: str | None
    in_flight: int | None
    rpcs_total: int | None
    connected_for: float | None = None
    connected_at: float | None = None
    address: str | None = None
    connections: int | None = None


@dataclass(frozen=True, slots=True)
class BackendStats:
    """One address the pool spreads over (``PoolConfig.spread``).

    address: ``host:port`` as resolved. slots: slots assigned to it now.
    ready: channels in rotation connected to it (during a move, a slot counts as
    ready at its old address until its new channel replaces the old one).
    connections: TCP connections to it: one per ready channel, or the channel's
    ``SlotStats.connections`` when known (connection scaling). Summed over a fleet's
    pools (the exporters label it by address), the backend's share of the fleet.
    """

    address: str
    slots: int
    ready: int
    connections: int = 0


@dataclass(frozen=True, slots=True)
class EjectionStats:
    """Outlier ejection of one backend (``PoolConfig.outlier_ejection``).

    backend: the target its channels dial (an address when the pool spreads).
    ejected: out of the pick now. ejections: times ejected in all.
    ejected_for: seconds the current (or last) ejection lasts.
    remaining: seconds until the current ejection ends, None when not ejected.
    """

    backend: str
    ejected: bool
    ejections: int
    ejected_for: float
    remaining: float | None


@dataclass(frozen=True, slots=True)
class PoolStats:
    """A snapshot of the whole pool: its status, one ``SlotStats`` per slot, and totals.

    Totals over the pool's life (never decrease, for counters): connects,
    disconnects, connect_failures, rpcs_total (None when not counted).
    reconnects: over the current slots. in_flight: RPCs running now on all
    open channels, draining ones included (None when not counted).
    retiring: channels out of rotation that are draining before close.
    events_dropped: events not delivered to a listener that did not keep up.
    backends: one ``BackendStats`` per resolved address when the pool spreads
        (addresses with no slot included), then one per address no longer resolved
        that a ready channel still connects to (its slot moving off it), else ().
    retries: RPCs sent again on another channel after an attempt that never
        reached a server (``PoolConfig.transparent_retry``), through any API.
    policy_retries: attempts ``PoolConfig.retry`` made after a failed one.
    hedges: hedged attempts ``PoolConfig.hedging`` sent to another channel.
    hedges_won: those of them that answered first (the RPC's answer).
    spread_off_reason: why the pool does not spread its target over the backends
        (then the target goes to grpcio as given), None when it spreads: "spread='off'",
        "a list of targets", "grpcio's load balancing chosen in options", "one IP
        address", "localhost", "scheme 'unix' is not resolved by the pool" (any scheme
        the pool does not know), "dns server in target needs the [dns] extra (pip
        install grpc-pool[dns])", or "malformed target (...)".
    connections: TCP connections over the slots whose ``SlotStats.connections`` is
        known (connection scaling), None when none is.
    subset: the resolved addresses this pool has slots on now (its subset when it has
        fewer slots than the target has backends), in resolution order; () when the
        pool does not spread.
    ejections: one ``EjectionStats`` per backend outlier ejection ever took out of
        the pick (ejected now or before), else ().
    """

    name: str
    target: str
    status: PoolStatus
    slots: tuple[SlotStats, ...]
    connects: int
    reconnects: int
    disconnects: int
    connect_failures: int
    retiring: int
    in_flight: int | None
    rpcs_total: int | None
    events_dropped: int
    backends: tuple[BackendStats, ...] = ()
    retries: int = 0
    policy_retries: int = 0
    spread_off_reason: str | None = None
    connections: int | None = None
    subset: tuple[str, ...] = ()
    ejections: tuple[EjectionStats, ...] = ()
    hedges: int = 0
    hedges_won: int = 0


def backend_stats(
    addresses: tuple[str, ...], slots: Iterable[tuple[str | None, str | None, int]]
) -> tuple[BackendStats, ...]:
    """Per address: slots assigned, ready channels and connections on it. ``slots``: per
    slot, (its address, the address its ready channel connects to or None, that
    channel's TCP connections). An address no longer resolved that a ready channel still
    connects to (its slot moving off it) comes after the resolved ones."""
    assigned = dict.fromkeys(addresses, 0)
    ready = dict.fromkeys(addresses, 0)
    connections = dict.fromkeys(addresses, 0)
    for address, ready_at, held in slots:
        if ready_at is not None and ready_at not in ready:
            assigned[ready_at] = ready[ready_at] = connections[ready_at] = 0
        if address in assigned:
            assigned[address] += 1
        if ready_at is not None:
            ready[ready_at] += 1
            connections[ready_at] += held
    return tuple(BackendStats(a, assigned[a], ready[a], connections[a]) for a in ready)
