"""Exporters against the real libraries: a Prometheus scrape and the OpenTelemetry
SDK's in-memory reader show the pool's gauges and counters."""

from __future__ import annotations

import json
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from grpc_pool._config.scaling import grpcio_has_a105
from grpc_pool.otel import instrument
from grpc_pool.prometheus import PoolCollector
from grpc_pool.testing.echo import ECHO, EchoServer

from .conftest import wait_until


def scrape(registry: CollectorRegistry) -> dict[tuple[str, str], float]:
    """{(sample name, pool label): value} from the text exposition format."""
    text = generate_latest(registry).decode()
    return {
        (sample.name, sample.labels.get("pool", "")): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_prometheus_scrape(make_pool: Any, server: EchoServer) -> None:
    """Gauges follow the pool's state; counters count connects, losses, failures, RPCs."""
    pool = make_pool(server.target, size=3, name="orders")
    registry = CollectorRegistry()
    registry.register(PoolCollector(pool))
    pool.wait_ready(timeout=10, min_ready=3)
    for _ in range(7):
        pool.get_channel().unary_unary(ECHO)(b"x", timeout=5)
    metrics = scrape(registry)
    assert metrics[("grpc_pool_channels_ready", "orders")] == 3
    assert metrics[("grpc_pool_channels_expected", "orders")] == 3
    assert metrics[("grpc_pool_connects_total", "orders")] == 3
    assert metrics[("grpc_pool_rpcs_total", "orders")] == 7
    assert metrics[("grpc_pool_rpcs_in_flight", "orders")] == 0

    server.stop()
    wait_until(lambda: pool.status().state == "down", 10, "down")
    wait_until(lambda: pool.stats().connect_failures > 0, 10, "a failed attempt")
    metrics = scrape(registry)
    assert metrics[("grpc_pool_channels_ready", "orders")] == 0
    assert metrics[("grpc_pool_disconnects_total", "orders")] == 3
    assert metrics[("grpc_pool_connection_failures_total", "orders")] >= 1
    assert ("grpc_pool_reconnect_delay_seconds", "orders") in metrics
    server.start()
    pool.wait_ready(timeout=10, min_ready=3)
    pool.scale_down(2)
    metrics = scrape(registry)
    assert metrics[("grpc_pool_connects_total", "orders")] == 6  # never decreases
    assert metrics[("grpc_pool_rpcs_total", "orders")] == 7
    assert metrics[("grpc_pool_channels_expected", "orders")] == 1


def test_opentelemetry_in_memory_reader(make_pool: Any, server: EchoServer) -> None:
    """Counters and histograms fed by events, gauges observed from stats."""
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    pool = make_pool(server.target, size=2, name="otel")
    instrument(pool, meter_provider=provider)
    pool.wait_ready(timeout=10, min_ready=2)
    server.stop()
    wait_until(lambda: pool.status().state == "down", 10, "down")
    wait_until(lambda: pool.stats().connect_failures > 0, 10, "a failed attempt")
    server.start()
    pool.wait_ready(timeout=10, min_ready=2)
    wait_until(lambda: pool.stats().connects == 4, 10, "4 connects")
    pool.close()  # delivers the pending events to the listener

    points: dict[str, Any] = {}
    data = reader.get_metrics_data()
    assert data is not None
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    assert point.attributes["pool.name"] == "otel"
                    points[metric.name] = point
    assert points["grpc_pool.connects"].value == 4  # exact, also before instrument()
    assert points["grpc_pool.disconnects"].value == 2
    assert points["grpc_pool.connection_failures"].value >= 1
    assert points["grpc_pool.connect.duration"].count >= 2  # the reconnects at least
    assert points["grpc_pool.reconnect.delay"].count >= 2
    assert points["grpc_pool.channels.expected"].value == 0  # closed: no slots left
    assert "grpc_pool.channels.ready" in points and "grpc_pool.rpcs.in_flight" in points
    provider.shutdown()


@pytest.mark.skipif(not grpcio_has_a105(), reason="connectionScaling needs grpcio >= 1.84")
def test_exporters_show_connections_with_connection_scaling(
    make_pool: Any, server: EchoServer
) -> None:
    """With connectionScaling in options, Prometheus has ``grpc_pool_connections`` per
    slot and OpenTelemetry ``grpc_pool.connections`` (their sum); a pool without it
    exports neither (the count is unknown, not 0)."""
    config = json.dumps({"connectionScaling": {"maxConnectionsPerSubchannel": 3}})
    scaled = make_pool(
        server.target, size=2, name="scaled", options=[("grpc.service_config", config)]
    )
    plain = make_pool(server.target, size=2, name="plain")
    registry = CollectorRegistry()
    registry.register(PoolCollector(scaled, plain))
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    instrument(scaled, meter_provider=provider)
    instrument(plain, meter_provider=provider)
    for pool in (scaled, plain):
        pool.wait_ready(timeout=10, min_ready=2)
    text = generate_latest(registry).decode()
    samples = [
        (s.labels["pool"], s.labels["slot"], s.value)
        for family in text_string_to_metric_families(text)
        if family.name == "grpc_pool_connections"
        for s in family.samples
    ]
    assert sorted(samples) == [("scaled", "0", 1.0), ("scaled", "1", 1.0)]
    data = reader.get_metrics_data()
    assert data is not None
    points = [
        (p.attributes["pool.name"], p.value)
        for r in data.resource_metrics
        for sc in r.scope_metrics
        for m in sc.metrics
        if m.name == "grpc_pool.connections"
        for p in m.data.data_points
    ]
    assert points == [("scaled", 2)]
    provider.shutdown()
