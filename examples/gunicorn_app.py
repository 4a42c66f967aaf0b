"""gunicorn with ``--preload``: one pool per process, created at import in the master.

Run it (from the repository root) against a gRPC server::

    GRPC_POOL_TARGET=127.0.0.1:50051 GRPC_POOL_INSECURE=1 \\
        gunicorn -c examples/gunicorn_conf.py examples.gunicorn_app:app

With ``preload_app = True`` (or ``--preload``) the master imports this module once,
so the pool is created in the master, before the workers are forked. Nothing else
is needed for the workers: grpc_pool's ``os.register_at_fork`` handlers park the
master's pool around each fork, and in each worker the pool drops the inherited
channels untouched and rebuilds its own (new threads, new channels, new TCP
connections) on first use. ``post_fork`` in ``gunicorn_conf.py`` makes that first
use ``pool.wait_ready()``, so a worker starts serving with connections up.
Without ``--preload`` each worker imports this module after the fork and builds
its pool then: the same code works both ways.

Endpoints: ``/peer`` answers ``{"pid": <worker pid>, "peer": <this connection as
the backend sees it>}`` (``?delay=S`` first makes a backend call that takes S
seconds); ``/healthz`` answers the pool's status, 503 when it is down.
"""

from __future__ import annotations

import atexit
import dataclasses
import json
import os
from collections.abc import Iterable
from typing import TYPE_CHECKING
from urllib.parse import parse_qs

import grpc

import grpc_pool
from grpc_pool.testing import PEER, SLOW

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

# How long a request waits for a ready channel before answering 503, and the
# deadline of each backend call.
CHANNEL_WAIT = 2.0
RPC_TIMEOUT = 5.0
CLOSE_GRACE = 5.0

# Created at import: in the master with --preload, in each worker without it.
# Settings from GRPC_POOL_TARGET, GRPC_POOL_SIZE, GRPC_POOL_INSECURE, ...
pool = grpc_pool.Pool.from_config(grpc_pool.PoolConfig.from_env())
# Runs at the normal exit of every process holding the pool: each worker (gunicorn
# workers exit through sys.exit) and the master. A worker's pool is its own after
# the fork, so each closes its own connections.
atexit.register(pool.close, CLOSE_GRACE)


def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """The WSGI application."""
    path = environ.get("PATH_INFO", "")
    if path == "/peer":
        query = parse_qs(environ.get("QUERY_STRING", ""))
        status, body = peer(float(query.get("delay", ["0"])[0]))
    elif path == "/healthz":
        state = pool.status()
        status = 503 if state.state == "down" else 200
        body = dataclasses.asdict(state)
    else:
        status, body = 404, {"error": "not found"}
    return respond(start_response, status, body)


def peer(delay: float) -> tuple[int, dict[str, object]]:
    """A backend call over a channel of this process's pool."""
    try:
        channel = pool.get_channel(timeout=CHANNEL_WAIT)
        if delay > 0:
            channel.unary_unary(SLOW)(str(delay).encode(), timeout=RPC_TIMEOUT + delay)
        seen_as: bytes = channel.unary_unary(PEER)(b"", timeout=RPC_TIMEOUT)
    except grpc_pool.NoChannelAvailable as error:
        return 503, {"error": "backend unavailable", "detail": str(error)}
    except grpc.RpcError as error:
        code = error.code() if isinstance(error, grpc.Call) else None
        return 502, {"error": "backend call failed", "code": str(code)}
    return 200, {"pid": os.getpid(), "peer": seen_as.decode()}


def respond(start_response: StartResponse, status: int, body: object) -> list[bytes]:
    data = json.dumps(body).encode()
    reason = {200: "OK", 404: "Not Found", 502: "Bad Gateway", 503: "Service Unavailable"}
    start_response(
        f"{status} {reason[status]}",
        [("Content-Type", "application/json"), ("Content-Length", str(len(data)))],
    )
    return [data]
