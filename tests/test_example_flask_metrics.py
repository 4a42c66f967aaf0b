"""The observability doc's worked example: a Flask /metrics endpoint scraped for real."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from examples.flask_metrics import create_app
from grpc_pool.testing.echo import ECHO, EchoServer


def test_flask_metrics_endpoint_serves_pool_metrics(server: EchoServer) -> None:
    """GET /metrics answers the Prometheus text format with the pool's families."""
    app = create_app(server.target)
    pool = app.extensions["grpc_pool"]
    try:
        pool.wait_ready(timeout=10, min_ready=4)
        for _ in range(5):
            pool.get_channel().unary_unary(ECHO)(b"m", timeout=5)
        response = app.test_client().get("/metrics")
        assert response.status_code == 200
        assert response.mimetype == "text/plain"
        samples = {
            (s.name, s.labels["pool"]): s.value
            for family in text_string_to_metric_families(response.get_data(as_text=True))
            for s in family.samples
        }
        assert samples[("grpc_pool_channels_ready", "backend")] == 4
        assert samples[("grpc_pool_rpcs_total", "backend")] == 5
    finally:
        pool.close()
