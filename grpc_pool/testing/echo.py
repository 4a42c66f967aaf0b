"""An echo server on loopback for the demo and the tests (no generated code needed)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc

__all__ = ["CHAT", "COLLECT", "ECHO", "ECHO_STREAM", "FAIL", "PEER", "SLOW", "EchoServer"]

SERVICE = "grpc_pool.demo.Echo"
ECHO = f"/{SERVICE}/Echo"
SLOW = f"/{SERVICE}/Slow"
ECHO_STREAM = f"/{SERVICE}/EchoStream"
PEER = f"/{SERVICE}/Peer"
FAIL = f"/{SERVICE}/Fail"
CHAT = f"/{SERVICE}/Chat"
COLLECT = f"/{SERVICE}/Collect"


class EchoServer:
    """A real grpc server on 127.0.0.1 (port 0 picks a free port) serving raw bytes.

    Echo returns the request; Slow sleeps ``float(request)`` seconds then returns it;
    EchoStream sends the request back ``int(request)`` times, 10 ms apart;
    Peer returns the caller's address as the server sees it (its TCP connection);
    Fail aborts with the status code named by the request (e.g. b"UNAVAILABLE");
    Chat (bidirectional) answers every request with itself; Collect (client
    streaming) answers once with the requests joined.
    With grpcio-health-checking installed it also serves grpc.health.v1.Health:
    ``set_serving(False)`` makes every check answer NOT_SERVING.
    ``peers`` records every client peer (ip:port) seen: one TCP connection each.
    Restart with ``start()`` after ``stop()`` reuses the same port.
    """

    def __init__(
        self,
        port: int = 0,
        host: str = "127.0.0.1",
        workers: int = 32,
        options: list[tuple[str, Any]] | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self._workers = workers
        self._options = options or []
        self._server: grpc.Server | None = None
        self._executor: futures.ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self.peers: set[str] = set()
        self._health: Any = None
        self._serving = True
        self.calls = 0

    @property
    def target(self) -> str:
        return f"{self.host}:{self.port}"

    def _seen(self, context: grpc.ServicerContext) -> None:
        with self._lock:
            self.peers.add(context.peer())
            self.calls += 1

    def _echo(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        self._seen(context)
        return request

    def _slow(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        self._seen(context)
        # In small steps: a cancelled call ends here too, not only on the client.
        deadline = time.monotonic() + float(request.decode() or 0)
        while context.is_active() and (left := deadline - time.monotonic()) > 0:
            time.sleep(min(left, 0.01))
        return request

    def _fail(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        self._seen(context)
        context.abort(grpc.StatusCode[request.decode()], "failed on request")
        raise AssertionError("abort returns only by raising")

    def _add_health(self, server: grpc.Server) -> None:
        try:
            from grpc_health.v1 import health, health_pb2_grpc
        except ImportError:  # the health extra is not installed: no health service
            return
        self._health = health.HealthServicer()
        self.set_serving(self._serving)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)

    def set_serving(self, serving: bool) -> None:
        """What health checks answer, for the server ("") and every service name."""
        from grpc_health.v1 import health_pb2

        self._serving = serving
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        if self._health is not None:
            self._health.set("", status)
            self._health.set(SERVICE, status)

    def _peer(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        self._seen(context)
        return context.peer().encode()

    def _stream(self, request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        self._seen(context)
        for _ in range(int(request.decode() or 1)):
            if not context.is_active():
                return
            yield request
            time.sleep(0.01)

    def _chat(self, requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
        self._seen(context)
        yield from requests

    def _collect(self, requests: Iterator[bytes], context: grpc.ServicerContext) -> bytes:
        self._seen(context)
        return b"".join(requests)

    def start(self) -> EchoServer:
        handler = grpc.method_handlers_generic_handler(
            SERVICE,
            {
                "Echo": grpc.unary_unary_rpc_method_handler(self._echo),
                "Slow": grpc.unary_unary_rpc_method_handler(self._slow),
                "EchoStream": grpc.unary_stream_rpc_method_handler(self._stream),
                "Peer": grpc.unary_unary_rpc_method_handler(self._peer),
                "Fail": grpc.unary_unary_rpc_method_handler(self._fail),
                "Chat": grpc.stream_stream_rpc_method_handler(self._chat),
                "Collect": grpc.stream_unary_rpc_method_handler(self._collect),
            },
        )
        self._executor = futures.ThreadPoolExecutor(
            max_workers=self._workers, thread_name_prefix="echo-server"
        )
        server = grpc.server(self._executor, options=self._options)
        server.add_generic_rpc_handlers((handler,))
        self._add_health(server)
        port = server.add_insecure_port(f"{self.host}:{self.port}")
        if port == 0:
            raise RuntimeError(f"could not bind {self.host}:{self.port}")
        self.port = port
        server.start()
        self._server = server
        return self

    def stop(self, grace: float | None = None) -> None:
        """Stop serving: grace None cancels in-flight RPCs at once (abrupt)."""
        server, self._server = self._server, None
        executor, self._executor = self._executor, None
        if server is not None:
            server.stop(grace).wait(10)
        if executor is not None:
            executor.shutdown(wait=False)  # handlers still sleeping end on their own

    def restart(self, down_for: float = 0.0, grace: float | None = None) -> None:
        self.stop(grace)
        if down_for:
            time.sleep(down_for)
        self.start()

    def __enter__(self) -> EchoServer:
        return self.start() if self._server is None else self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
