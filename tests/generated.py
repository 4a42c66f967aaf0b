"""Generated code for tests: tests/protos/pingpong.proto compiled by grpcio-tools
into a temporary folder, and a loopback server implementing it."""

from __future__ import annotations

import importlib
import sys
import threading
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc

PROTOS = Path(__file__).parent / "protos"


def compile_pingpong(out: Path) -> tuple[ModuleType, ModuleType]:
    """(pingpong_pb2, pingpong_pb2_grpc), generated into ``out`` and imported."""
    from grpc_tools import protoc

    code = protoc.main(
        [
            "protoc",
            f"-I{PROTOS}",
            f"--python_out={out}",
            f"--grpc_python_out={out}",
            str(PROTOS / "pingpong.proto"),
        ]
    )
    if code != 0:
        raise RuntimeError(f"protoc failed with {code}")
    sys.path.insert(0, str(out))
    try:
        pb2 = importlib.import_module("pingpong_pb2")
        pb2_grpc = importlib.import_module("pingpong_pb2_grpc")
    finally:
        sys.path.remove(str(out))
    return pb2, pb2_grpc


class PingPongServer:
    """The generated PingPong service on 127.0.0.1 (port 0). Every reply carries
    the caller's peer address; ``peers`` collects them (one per TCP connection)."""

    def __init__(self, pb2: ModuleType, pb2_grpc: ModuleType) -> None:
        self.pb2, self.pb2_grpc = pb2, pb2_grpc
        self.peers: set[str] = set()
        self._lock = threading.Lock()
        self._server: grpc.Server | None = None
        self.port = 0

    def _pong(self, text: str, context: grpc.ServicerContext) -> Any:
        peer = context.peer()
        with self._lock:
            self.peers.add(peer)
        return self.pb2.Pong(text=text, peer=peer)

    def start(self) -> PingPongServer:
        server_self = self

        class Servicer(self.pb2_grpc.PingPongServicer):  # type: ignore[name-defined,misc]
            def Unary(self, request: Any, context: grpc.ServicerContext) -> Any:
                return server_self._pong(request.text, context)

            def ServerStream(self, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
                for _ in range(request.count):
                    yield server_self._pong(request.text, context)

            def Bidi(self, requests: Iterator[Any], context: grpc.ServicerContext) -> Iterator[Any]:
                for request in requests:
                    yield server_self._pong(request.text, context)

        self._executor = futures.ThreadPoolExecutor(16, thread_name_prefix="pingpong")
        server = grpc.server(self._executor)
        self.pb2_grpc.add_PingPongServicer_to_server(Servicer(), server)
        self.port = server.add_insecure_port(f"127.0.0.1:{self.port}")
        server.start()
        self._server = server
        return self

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.stop(None).wait(10)
            self._executor.shutdown(wait=True)
