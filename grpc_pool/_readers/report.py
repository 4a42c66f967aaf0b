"""Readers' figures from one published PoolState: ``Pool.status()`` and ``Pool.stats()``."""

from __future__ import annotations

import time
from collections.abc import Iterable

from .._base.redact import redact_target
from .._channel.pooled import PooledChannel
from .._config.config import PoolConfig
from .._config.targets import dial_target, undial
from .._contract.state import PoolState, SlotStatus, SlotView, health_of
from .stats import BackendStats, EjectionStats, PoolStats, PoolStatus, SlotStats, backend_stats

__all__ = ["pool_stats", "pool_status"]


def pool_status(state: PoolState[PooledChannel]) -> PoolStatus:
    expected, current = state.expected, len(state.channels)
    return PoolStatus(expected, current, health_of(expected, current))


def pool_stats(
    name: str,
    config: PoolConfig,
    state: PoolState[PooledChannel],
    events_dropped: int,
    retries: tuple[int, ...] = (0, 0, 0, 0),
    spread_off_reason: str | None = None,
) -> PoolStats:
    """Every figure from the one ``state``: none is torn from another."""
    index = {id(c): i for i, c in enumerate(state.channels)}
    views = state.views
    slots = tuple(_slot_stats(v, redact_target(config.target_of(v.slot)), index) for v in views)
    totals, retired = state.totals, state.retired
    tracked = config.track_in_flight
    open_channels = (*(s.channel for s in views if s.channel is not None), *retired)
    backends = _backends(state.addresses, zip(views, slots, strict=True))
    return PoolStats(
        name=name,
        target=config.target_label,
        status=pool_status(state),
        slots=slots,
        connects=totals.connects,
        reconnects=sum(s.reconnects for s in slots),
        disconnects=totals.disconnects,
        connect_failures=totals.connect_failures,
        retiring=len(retired),
        in_flight=sum(c.in_flight or 0 for c in open_channels) if tracked else None,
        rpcs_total=totals.rpcs_closed + sum(c.rpcs_total or 0 for c in open_channels)
        if tracked
        else None,
        events_dropped=events_dropped,
        backends=backends,
        retries=retries[0],
        policy_retries=retries[1],
        spread_off_reason=spread_off_reason,
        connections=_known_sum(s.connections for s in slots),
        subset=tuple(b.address for b in backends if b.slots),
        ejections=_ejections(state),
        hedges=retries[2],
        hedges_won=retries[3],
    )


def _ejections(state: PoolState[PooledChannel]) -> tuple[EjectionStats, ...]:
    now = time.monotonic()
    return tuple(
        EjectionStats(
            backend=e.backend,
            ejected=e.ejected,
            ejections=e.ejections,
            ejected_for=e.ejected_for,
            remaining=max(0.0, e.until - now) if e.until is not None else None,
        )
        for e in state.ejections
    )


def _known_sum(values: Iterable[int | None]) -> int | None:
    known = [v for v in values if v is not None]
    return sum(known) if known else None


def _slot_stats(view: SlotView[PooledChannel], target: str, index: dict[int, int]) -> SlotStats:
    channel = view.channel
    since = view.connected_since
    age = max(0.0, time.monotonic() - since) if since is not None else None
    return SlotStats(
        slot=view.slot,
        target=target,
        index=index.get(id(channel)) if channel is not None else None,
        state=view.state.value,
        channel_id=channel.channel_id if channel is not None else None,
        connected_since=view.connected_since,
        connects=view.connects,
        reconnects=max(0, view.connects - 1),
        failures=view.failures,
        disconnects=view.disconnects,
        connect_failures=view.connect_failures,
        retry_delay=view.retry_delay,
        health=view.health,
        last_error=view.last_error,
        in_flight=channel.in_flight if channel is not None else None,
        rpcs_total=channel.rpcs_total if channel is not None else None,
        connected_for=age,
        connected_at=time.time() - age if age is not None else None,  # for people to read
        address=view.address,
        connections=channel.connections if channel is not None else None,
    )


def _backends(
    addresses: tuple[str, ...], pairs: Iterable[tuple[SlotView[PooledChannel], SlotStats]]
) -> tuple[BackendStats, ...]:
    """``PoolStats.backends``: a ready slot counts at the address its channel dials, with
    its channel's connections (one unless connection scaling counted them)."""
    if not addresses:
        return ()
    dials = {dial_target(a): a for a in addresses}

    def ready_at(view: SlotView[PooledChannel]) -> str | None:
        channel = view.channel
        if view.state is not SlotStatus.READY or channel is None:
            return None
        return dials.get(channel.target) or undial(channel.target)

    return backend_stats(
        addresses,
        ((v.address, ready_at(v), 1 if s.connections is None else s.connections) for v, s in pairs),
    )
