"""Views calling the gRPC backend through the app's pool."""

from __future__ import annotations

import dataclasses

import grpc
from django.http import HttpRequest, JsonResponse

import grpc_pool
from grpc_pool.testing import ECHO

from .apps import get_pool

# How long a request waits for a ready channel before answering 503, and the
# deadline of the backend call itself.
CHANNEL_WAIT = 2.0
RPC_TIMEOUT = 5.0


class EchoStub:
    """Stands in for a generated ``*_pb2_grpc.EchoStub`` (raw bytes, no protobuf)."""

    def __init__(self, channel: grpc.Channel) -> None:
        self.Echo: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(ECHO)


def echo(request: HttpRequest, message: str) -> JsonResponse:
    try:
        stub = get_pool().stub(EchoStub, timeout=CHANNEL_WAIT)
        reply: bytes = stub.Echo(message.encode(), timeout=RPC_TIMEOUT)
    except (grpc_pool.NoChannelAvailable, grpc_pool.PoolClosed) as error:
        return JsonResponse({"error": "backend unavailable", "detail": str(error)}, status=503)
    except grpc.RpcError as error:
        code = error.code() if isinstance(error, grpc.Call) else None
        return JsonResponse({"error": "backend call failed", "code": str(code)}, status=502)
    return JsonResponse({"echo": reply.decode()})


def healthz(request: HttpRequest) -> JsonResponse:
    try:
        status = get_pool().status()
    except grpc_pool.PoolClosed:
        return JsonResponse({"state": "closed"}, status=503)
    return JsonResponse(dataclasses.asdict(status), status=503 if status.state == "down" else 200)
