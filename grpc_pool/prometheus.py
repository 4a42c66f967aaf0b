"""Prometheus metrics for pools (extra ``grpc_pool[prometheus]``).

    from prometheus_client import REGISTRY
    from grpc_pool.prometheus import PoolCollector
    REGISTRY.register(PoolCollector(pool))

Values are read from ``pool.stats()`` at scrape time: nothing runs between scrapes.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from ._pool import Pool

__all__ = ["PoolCollector"]


class PoolCollector(Collector):
    """Exposes every added pool's gauges and counters, labelled by pool and target.

    Pools are held weakly: a pool that is garbage collected disappears from the
    scrape; a closed pool keeps reporting its final values (state "down").
    """

    def __init__(self, *pools: Pool) -> None:
        self._pools: weakref.WeakSet[Pool] = weakref.WeakSet()
        for pool in pools:
            self.add(pool)

    def add(self, pool: Pool) -> None:
        self._pools.add(pool)

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        labels = ["pool", "target"]
        ready = GaugeMetricFamily(
            "grpc_pool_channels_ready", "Channels ready and in rotation.", labels=labels
        )
        expected = GaugeMetricFamily(
            "grpc_pool_channels_expected", "Slots configured (expected size).", labels=labels
        )
        retiring = GaugeMetricFamily(
            "grpc_pool_channels_retiring", "Channels out of rotation, draining.", labels=labels
        )
        in_flight = GaugeMetricFamily(
            "grpc_pool_rpcs_in_flight", "RPCs running on the pool's channels.", labels=labels
        )
        delay = GaugeMetricFamily(
            "grpc_pool_reconnect_delay_seconds",
            "Last backoff delay chosen by each slot.",
            labels=[*labels, "slot"],
        )
        connections = GaugeMetricFamily(
            "grpc_pool_connections",
            "TCP connections each slot's channel holds (connection scaling only).",
            labels=[*labels, "slot"],
        )
        connects = CounterMetricFamily(
            "grpc_pool_connects", "Channels that became ready.", labels=labels
        )
        disconnects = CounterMetricFamily(
            "grpc_pool_disconnects", "Ready channels that were lost.", labels=labels
        )
        failures = CounterMetricFamily(
            "grpc_pool_connection_failures", "Failed connection attempts.", labels=labels
        )
        rpcs = CounterMetricFamily("grpc_pool_rpcs", "RPCs started.", labels=labels)
        retries = CounterMetricFamily(
            "grpc_pool_retries",
            "RPCs sent again on another channel, never having reached a server.",
            labels=labels,
        )
        policy_retries = CounterMetricFamily(
            "grpc_pool_policy_retries",
            "RPCs sent again by the pool's retry policy (PoolConfig.retry).",
            labels=labels,
        )
        hedges = CounterMetricFamily(
            "grpc_pool_hedges",
            "Hedged attempts sent to another channel (PoolConfig.hedging).",
            labels=labels,
        )
        hedges_won = CounterMetricFamily(
            "grpc_pool_hedges_won",
            "Hedged attempts that answered first (PoolConfig.hedging).",
            labels=labels,
        )
        backend_ready = GaugeMetricFamily(
            "grpc_pool_backend_channels_ready",
            "Channels ready per backend address the pool spreads over.",
            labels=[*labels, "address"],
        )
        backend_slots = GaugeMetricFamily(
            "grpc_pool_backend_slots",
            "Slots assigned per backend address the pool spreads over.",
            labels=[*labels, "address"],
        )
        backend_connections = GaugeMetricFamily(
            "grpc_pool_backend_connections",
            "TCP connections per backend address (sum by address over a fleet's pools).",
            labels=[*labels, "address"],
        )
        ejected = GaugeMetricFamily(
            "grpc_pool_backend_ejected",
            "1 while outlier ejection keeps the backend out of the pick, else 0.",
            labels=[*labels, "address"],
        )
        ejections = CounterMetricFamily(
            "grpc_pool_backend_ejections",
            "Times outlier ejection took the backend out of the pick.",
            labels=[*labels, "address"],
        )
        for pool in list(self._pools):
            stats = pool.stats()
            values = [stats.name, stats.target]
            ready.add_metric(values, stats.status.current_size)
            expected.add_metric(values, stats.status.expected_size)
            retiring.add_metric(values, stats.retiring)
            connects.add_metric(values, stats.connects)
            disconnects.add_metric(values, stats.disconnects)
            failures.add_metric(values, stats.connect_failures)
            retries.add_metric(values, stats.retries)
            policy_retries.add_metric(values, stats.policy_retries)
            hedges.add_metric(values, stats.hedges)
            hedges_won.add_metric(values, stats.hedges_won)
            if stats.in_flight is not None:
                in_flight.add_metric(values, stats.in_flight)
            if stats.rpcs_total is not None:
                rpcs.add_metric(values, stats.rpcs_total)
            for slot in stats.slots:
                if slot.retry_delay is not None:
                    delay.add_metric([*values, str(slot.slot)], slot.retry_delay)
                if slot.connections is not None:
                    connections.add_metric([*values, str(slot.slot)], slot.connections)
            for backend in stats.backends:
                backend_ready.add_metric([*values, backend.address], backend.ready)
                backend_slots.add_metric([*values, backend.address], backend.slots)
                backend_connections.add_metric([*values, backend.address], backend.connections)
            for ejection in stats.ejections:
                ejected.add_metric([*values, ejection.backend], int(ejection.ejected))
                ejections.add_metric([*values, ejection.backend], ejection.ejections)
        yield from (ready, expected, retiring, in_flight, delay, connects, disconnects, failures)
        yield from (rpcs, retries, policy_retries, hedges, hedges_won)
        yield from (backend_ready, backend_slots, connections)
        yield from (backend_connections, ejected, ejections)
