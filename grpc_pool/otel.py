"""OpenTelemetry metrics for a pool (extra ``grpc_pool[opentelemetry]``).

    from grpc_pool.otel import instrument
    instrument(pool)                      # the global MeterProvider
    instrument(pool, meter_provider=mp)   # or yours

Gauges and counters are observed from ``pool.stats()`` at collection time;
histograms are fed by the pool's events.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable
from typing import Any

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation

from ._contract.events import (
    ChannelConnectedEvent,
    PoolEvent,
    ReconnectScheduledEvent,
)
from ._pool import Pool

__all__ = ["instrument"]

_SCOPE = "grpc_pool"


def instrument(pool: Pool, meter_provider: MeterProvider | None = None) -> None:
    """Create the pool's instruments and feed them; they stop with the pool.

    Instruments (attribute ``pool.name`` on every point):
    gauges ``grpc_pool.channels.ready``, ``grpc_pool.channels.expected``,
    ``grpc_pool.rpcs.in_flight``, ``grpc_pool.connections`` (TCP connections over the
    channels, only with gRFC A105 connectionScaling in ``options``: see
    ``SlotStats.connections``), ``grpc_pool.backend.channels.ready`` (one point per
    backend address the pool spreads over, attribute ``grpc_pool.backend``),
    ``grpc_pool.backend.connections`` (TCP connections per backend address, same
    attribute: sum it by address over a fleet's pools),
    ``grpc_pool.backend.ejected`` (1 while outlier ejection keeps a backend out of the
    pick, else 0; one point per backend ever ejected, attribute ``grpc_pool.backend``);
    counters ``grpc_pool.backend.ejections`` (per backend, as above),
    ``grpc_pool.connects``, ``grpc_pool.disconnects``,
    ``grpc_pool.connection_failures``, ``grpc_pool.rpcs``, ``grpc_pool.retries``
    (sent again transparently), ``grpc_pool.policy_retries`` (by ``PoolConfig.retry``),
    ``grpc_pool.hedges`` and ``grpc_pool.hedges_won`` (``PoolConfig.hedging``);
    histograms ``grpc_pool.connect.duration`` (s) and ``grpc_pool.reconnect.delay`` (s).

    Counters are the pool's lifetime totals, observed at collection (exact even
    for what happened before this call); the histograms are fed by events from
    this call on.
    """
    meter = (meter_provider or metrics.get_meter_provider()).get_meter(_SCOPE)
    attributes = {"pool.name": pool.name, "pool.target": pool.config.target_label}
    ref = weakref.ref(pool)  # the meter must not keep the pool alive

    def observe(field: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def callback(_options: CallbackOptions) -> Iterable[Observation]:
            live = ref()
            if live is None:
                return []
            stats = live.stats()
            value = {
                "ready": stats.status.current_size,
                "expected": stats.status.expected_size,
                "in_flight": stats.in_flight,
                "connects": stats.connects,
                "disconnects": stats.disconnects,
                "failures": stats.connect_failures,
                "rpcs": stats.rpcs_total,
                "retries": stats.retries,
                "policy_retries": stats.policy_retries,
                "hedges": stats.hedges,
                "hedges_won": stats.hedges_won,
                "connections": stats.connections,
            }[field]
            return [] if value is None else [Observation(value, attributes)]

        return callback

    meter.create_observable_gauge(
        "grpc_pool.channels.ready",
        [observe("ready")],
        unit="{channel}",
        description="Channels ready and in rotation.",
    )
    meter.create_observable_gauge(
        "grpc_pool.channels.expected",
        [observe("expected")],
        unit="{channel}",
        description="Slots configured (expected size).",
    )
    meter.create_observable_gauge(
        "grpc_pool.rpcs.in_flight",
        [observe("in_flight")],
        unit="{rpc}",
        description="RPCs running on the pool's channels.",
    )

    meter.create_observable_gauge(
        "grpc_pool.connections",
        [observe("connections")],
        unit="{connection}",
        description="TCP connections the pool's channels hold (connection scaling only).",
    )

    def observe_backends(field: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def callback(_options: CallbackOptions) -> Iterable[Observation]:
            live = ref()
            if live is None:
                return []
            return [
                Observation(getattr(b, field), {**attributes, "grpc_pool.backend": b.address})
                for b in live.stats().backends
            ]

        return callback

    meter.create_observable_gauge(
        "grpc_pool.backend.channels.ready",
        [observe_backends("ready")],
        unit="{channel}",
        description="Channels ready per backend address the pool spreads over.",
    )
    meter.create_observable_gauge(
        "grpc_pool.backend.connections",
        [observe_backends("connections")],
        unit="{connection}",
        description="TCP connections per backend address (sum by address over a fleet).",
    )

    def observe_ejections(value: Callable[[Any], int]) -> Any:
        def callback(_options: CallbackOptions) -> Iterable[Observation]:
            live = ref()
            if live is None:
                return []
            return [
                Observation(value(e), {**attributes, "grpc_pool.backend": e.backend})
                for e in live.stats().ejections
            ]

        return callback

    meter.create_observable_gauge(
        "grpc_pool.backend.ejected",
        [observe_ejections(lambda e: int(e.ejected))],
        unit="{backend}",
        description="1 while outlier ejection keeps the backend out of the pick, else 0.",
    )
    meter.create_observable_counter(
        "grpc_pool.backend.ejections",
        [observe_ejections(lambda e: e.ejections)],
        unit="{ejection}",
        description="Times outlier ejection took the backend out of the pick.",
    )
    for name, field, unit in (
        ("grpc_pool.connects", "connects", "{connection}"),
        ("grpc_pool.disconnects", "disconnects", "{connection}"),
        ("grpc_pool.connection_failures", "failures", "{attempt}"),
        ("grpc_pool.rpcs", "rpcs", "{rpc}"),
        ("grpc_pool.retries", "retries", "{rpc}"),
        ("grpc_pool.policy_retries", "policy_retries", "{rpc}"),
        ("grpc_pool.hedges", "hedges", "{rpc}"),
        ("grpc_pool.hedges_won", "hedges_won", "{rpc}"),
    ):
        meter.create_observable_counter(name, [observe(field)], unit=unit)
    connect_duration = meter.create_histogram("grpc_pool.connect.duration", unit="s")
    reconnect_delay = meter.create_histogram("grpc_pool.reconnect.delay", unit="s")

    def on_event(event: PoolEvent) -> None:
        if isinstance(event, ChannelConnectedEvent):
            connect_duration.record(event.duration, attributes)
        elif isinstance(event, ReconnectScheduledEvent):
            reconnect_delay.record(event.delay, attributes)

    pool.add_listener(on_event)
