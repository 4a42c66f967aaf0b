"""Flask: one pool per process, created with the app, closed at interpreter exit.

Run it against the bundled echo server (or set GRPC_POOL_TARGET etc. and omit the
target to read the pool's settings from the environment). ``examples`` is not an
installed package: ``python -m examples.flask_app`` works from the repository root
only; from anywhere else, give the file's path::

    python -m examples.flask_app 127.0.0.1:50051            # in the repository root
    python path/to/examples/flask_app.py 127.0.0.1:50051    # anywhere

Handlers take a channel from the pool per request: ``pool.stub(EchoStub)`` is a
cached stub bound to the channel picked for this call, so consecutive requests
spread over the pool's connections.
"""

from __future__ import annotations

import atexit
import dataclasses
import logging
import sys
from datetime import datetime, timezone
from typing import Any

import grpc
from flask import Flask, Response, current_app, jsonify

import grpc_pool
from grpc_pool.testing import ECHO

# How long a request waits for a ready channel (e.g. right after start or during a
# reconnect) before answering 503, and the deadline of the backend call itself.
CHANNEL_WAIT = 2.0
RPC_TIMEOUT = 5.0
# At exit, RPCs still in flight get this long to finish.
CLOSE_GRACE = 5.0

log = logging.getLogger(__name__)


class EchoStub:
    """Stands in for a generated ``*_pb2_grpc.EchoStub`` (raw bytes, no protobuf)."""

    def __init__(self, channel: grpc.Channel) -> None:
        self.Echo: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(ECHO)


def create_app(target: str | None = None, **pool_options: Any) -> Flask:
    """The app, with its pool in ``app.extensions["grpc_pool"]``.

    target: the backend; None reads the pool settings from ``GRPC_POOL_*``
        environment variables (``PoolConfig.from_env``).
    pool_options: ``PoolConfig`` fields, e.g. ``size=4, insecure=True``.
    """
    if target is None:
        config = dataclasses.replace(grpc_pool.PoolConfig.from_env(), **pool_options)
    else:
        config = grpc_pool.PoolConfig(target, **pool_options)
    app = Flask(__name__)
    # The pool starts now, at app creation: one per process. Its channels connect in
    # the background; handlers wait up to CHANNEL_WAIT for one.
    pool = grpc_pool.Pool.from_config(config)
    app.extensions["grpc_pool"] = pool
    # Closed at interpreter exit, not in a teardown hook: Flask's teardown_appcontext
    # and teardown_request run after *every* request, and Flask has no app-shutdown
    # hook. atexit runs on a normal exit (sys.exit, end of main, gunicorn's worker
    # exit, Ctrl-C in the dev server), after non-daemon threads are joined; a process
    # killed by a signal with no handler skips it (the OS then closes the sockets).
    atexit.register(pool.close, CLOSE_GRACE)

    @app.get("/echo/<message>")
    def echo(message: str) -> tuple[Response, int]:
        try:
            stub = get_pool().stub(EchoStub, timeout=CHANNEL_WAIT)
            reply: bytes = stub.Echo(message.encode(), timeout=RPC_TIMEOUT)
        except grpc_pool.NoChannelAvailable as error:  # backend down: fail fast, no 500
            # The details (pool, targets, last error) go to the log, not to HTTP clients.
            log.warning("echo: backend unavailable: %s", error)
            return jsonify(error="backend unavailable"), 503
        except grpc.RpcError as error:
            code = error.code() if isinstance(error, grpc.Call) else None
            log.warning("echo: backend call failed: %s", error)
            return jsonify(error="backend call failed", code=code.name if code else None), 502
        return jsonify(echo=reply.decode()), 200

    @app.get("/healthz")
    def healthz() -> tuple[Response, int]:
        status = get_pool().status()
        return jsonify(dataclasses.asdict(status)), 503 if status.state == "down" else 200

    @app.get("/stats")
    def stats() -> Response:
        return jsonify(stats_for_people(get_pool().stats()))

    return app


def stats_for_people(stats: grpc_pool.PoolStats) -> dict[str, Any]:
    """Pool stats as JSON for a dashboard: ages in seconds and wall-clock times (not
    the monotonic ``connected_since``), no targets or errors (those go to the log)."""
    return {
        "name": stats.name,
        "state": stats.status.state,
        "ready": stats.status.current_size,
        "size": stats.status.expected_size,
        "reconnects": stats.reconnects,
        "in_flight": stats.in_flight,
        "slots": [
            {
                "slot": s.slot,
                "state": s.state,
                "connected_for_s": round(s.connected_for, 3)
                if s.connected_for is not None
                else None,
                "connected_at": _iso(s.connected_at),
                "reconnects": s.reconnects,
                "in_flight": s.in_flight,
            }
            for s in stats.slots
        ],
    }


def _iso(unix_time: float | None) -> str | None:
    if unix_time is None:
        return None
    return datetime.fromtimestamp(unix_time, tz=timezone.utc).isoformat(timespec="seconds")


def get_pool() -> grpc_pool.Pool:
    """The pool of the app handling the current request."""
    pool: grpc_pool.Pool = current_app.extensions["grpc_pool"]
    return pool


def shutdown(app: Flask, grace: float = CLOSE_GRACE) -> None:
    """Close the app's pool now (for tests or an embedding server) instead of at exit."""
    pool: grpc_pool.Pool = app.extensions["grpc_pool"]
    atexit.unregister(pool.close)
    pool.close(grace)


if __name__ == "__main__":
    app = create_app(sys.argv[1], insecure=True) if len(sys.argv) > 1 else create_app()
    app.run(threaded=True)
