"""Flask ``/metrics`` for Prometheus, plus pool events in the application log.

python -m examples.flask_metrics 127.0.0.1:50051   # then GET /metrics
"""

from __future__ import annotations

import atexit
import logging
import sys

from flask import Flask, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

import grpc_pool
from grpc_pool.prometheus import PoolCollector

log = logging.getLogger("app.grpc_pool")


def log_event(event: grpc_pool.PoolEvent) -> None:
    """A listener: runs on the pool's listener thread, never in a request."""
    if event.name in ("channel_disconnected", "connection_failed", "health_check"):
        log.info("%s", event)


def create_app(target: str) -> Flask:
    pool = grpc_pool.Pool(target, size=4, insecure=True, name="backend", listeners=[log_event])
    atexit.register(pool.close)
    registry = CollectorRegistry()  # or prometheus_client.REGISTRY
    registry.register(PoolCollector(pool))

    app = Flask(__name__)
    app.extensions["grpc_pool"] = pool

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)

    return app


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    create_app(sys.argv[1]).run(threaded=True)
