"""Test helpers: a real gRPC echo server on loopback, with no generated code.

    import grpc_pool
    from grpc_pool.testing import ECHO, EchoServer

    with EchoServer() as server, grpc_pool.Pool(server.target, size=2, insecure=True) as pool:
        pool.wait_ready(timeout=10)
        assert pool.get_channel().unary_unary(ECHO)(b"hi", timeout=5) == b"hi"

Methods (raw bytes in and out): ``ECHO`` returns the request; ``SLOW`` sleeps
``float(request)`` seconds first; ``ECHO_STREAM`` streams the request back
``int(request)`` times; ``PEER`` returns the caller's TCP address as the server
sees it; ``FAIL`` aborts with the status code the request names (b"UNAVAILABLE");
``CHAT`` (bidirectional) answers each request with itself; ``COLLECT`` (client
streaming) answers once with the requests joined.
With the ``health`` extra it also serves ``grpc.health.v1.Health``.
"""

from __future__ import annotations

from .echo import CHAT, COLLECT, ECHO, ECHO_STREAM, FAIL, PEER, SLOW, EchoServer

EchoServer.__module__ = __name__  # shows as grpc_pool.testing.EchoServer

__all__ = ["CHAT", "COLLECT", "ECHO", "ECHO_STREAM", "FAIL", "PEER", "SLOW", "EchoServer"]
