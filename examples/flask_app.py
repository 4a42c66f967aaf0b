"""Flask: one pool per process, created with the app, closed at interpreter exit.

Run it against the bundled echo server (or set GRPC_POOL_TARGET etc. and omit the
target to read the pool's settings from the environment)::

    python -m examples.flask_app 127.0.0.1:50051

Handlers take a channel from the pool per request: ``pool.stub(EchoStub)`` is a
cached stub bound to the channel picked for this call, so consecutive requests
spread over the pool's connections.
"""

from __future__ import annotations

import atexit
import dataclasses
import sys
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
            return jsonify(error="backend unavailable", detail=str(error)), 503
        except grpc.RpcError as error:
            code = error.code() if isinstance(error, grpc.Call) else None
            return jsonify(error="backend call failed", code=str(code)), 502
        return jsonify(echo=reply.decode()), 200

    @app.get("/healthz")
    def healthz() -> tuple[Response, int]:
        status = get_pool().status()
        return jsonify(dataclasses.asdict(status)), 503 if status.state == "down" else 200

    return app


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
