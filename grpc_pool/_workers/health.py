"""grpc.health.v1 ``Health/Check``: the one implementation, for the workers and ``check``.

The two messages are protobuf classes built from a descriptor made here, in a
descriptor pool of our own: no generated code and no grpcio-health-checking, and
no clash with its registration of ``grpc/health/v1/health.proto`` when a program
imports both.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import Message

__all__ = ["METHOD", "HealthCheck", "HealthStatus", "check", "no_answer", "serving", "verdict"]

METHOD = "/grpc.health.v1.Health/Check"
_PACKAGE = "grpc.health.v1"
# HealthCheckResponse.ServingStatus, by number.
_STATUSES = ("UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN")
# Codes that mean no answer came back over the connection (a dead or black-holed
# transport, or our own cancel); any other answer proves the connection works.
_NO_ANSWER = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED}
)


def _message_classes() -> tuple[type[Message], type[Message]]:
    """HealthCheckRequest and HealthCheckResponse, as in grpc/health/v1/health.proto."""
    field = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(
        name="grpc_pool/health_v1.proto", package=_PACKAGE, syntax="proto3"
    )
    request = file.message_type.add(name="HealthCheckRequest")
    request.field.add(name="service", number=1, type=field.TYPE_STRING, label=field.LABEL_OPTIONAL)
    response = file.message_type.add(name="HealthCheckResponse")
    serving_status = response.enum_type.add(name="ServingStatus")
    for number, name in enumerate(_STATUSES):
        serving_status.value.add(name=name, number=number)
    response.field.add(
        name="status",
        number=1,
        type=field.TYPE_ENUM,
        type_name=f".{_PACKAGE}.HealthCheckResponse.ServingStatus",
        label=field.LABEL_OPTIONAL,
    )
    pool = descriptor_pool.DescriptorPool()  # private: never the default pool
    pool.Add(file)
    return (
        message_factory.GetMessageClass(
            pool.FindMessageTypeByName(f"{_PACKAGE}.HealthCheckRequest")
        ),
        message_factory.GetMessageClass(
            pool.FindMessageTypeByName(f"{_PACKAGE}.HealthCheckResponse")
        ),
    )


HealthCheckRequest, HealthCheckResponse = _message_classes()


@dataclass(frozen=True, slots=True)
class HealthStatus:
    """The outcome of one check.

    status: "SERVING", "NOT_SERVING", "UNKNOWN", "SERVICE_UNKNOWN" (the server's
        answer) or a gRPC status code name ("UNIMPLEMENTED", "DEADLINE_EXCEEDED", ...).
    answered: the server answered over the connection (a status or an error of
        its own): the transport works, whatever the status says.
    detail: the error's details, "" for an answer.
    """

    status: str
    answered: bool
    detail: str = ""

    @property
    def serving(self) -> bool:
        return self.status == "SERVING"


def _request(service: str) -> Any:
    """A HealthCheckRequest for ``service``. Built by field, not by keyword: the
    class is made at run time, and types-protobuf types its constructor as
    ``Message()``, which takes no field keywords."""
    request: Any = HealthCheckRequest()
    request.service = service
    return request


class HealthCheck:
    """One ``Health/Check`` in flight over ``channel``; ``result()`` waits for it."""

    __slots__ = ("_future",)

    def __init__(self, channel: grpc.Channel, service: str = "", timeout: float = 5.0) -> None:
        call = channel.unary_unary(
            METHOD,
            request_serializer=HealthCheckRequest.SerializeToString,
            response_deserializer=HealthCheckResponse.FromString,
        )
        self._future: Any = call.future(_request(service), timeout=timeout)

    def cancel(self) -> None:
        self._future.cancel()

    def add_done_callback(self, fn: Callable[[], None]) -> None:
        """``fn()`` once the check ended (on a gRPC thread, or at once if it has)."""
        self._future.add_done_callback(lambda _future: fn())

    def result(self, timeout: float | None = None) -> HealthStatus:
        """The answer; waits at most ``timeout`` seconds (then cancels: DEADLINE_EXCEEDED)."""
        try:
            response = self._future.result(timeout=timeout)
        except grpc.FutureTimeoutError:
            self._future.cancel()
            return HealthStatus("DEADLINE_EXCEEDED", False, "no answer")
        except grpc.FutureCancelledError:
            return HealthStatus("CANCELLED", False, "cancelled")
        except grpc.RpcError as error:
            if not isinstance(error, grpc.Call):
                return HealthStatus("UNKNOWN", False, str(error))
            code = error.code()
            return HealthStatus(code.name, code not in _NO_ANSWER, error.details() or "")
        number = getattr(response, "status", 0)
        name = _STATUSES[number] if 0 <= number < len(_STATUSES) else f"STATUS_{number}"
        return HealthStatus(name, True)


def check(channel: grpc.Channel, service: str = "", timeout: float = 5.0) -> HealthStatus:
    """One ``grpc.health.v1.Health/Check`` about ``service`` ("" = the server) over ``channel``."""
    return HealthCheck(channel, service, timeout).result()


# -- what a check's result means for the slot (the worker's reading) ----------
def serving(result: tuple[HealthStatus, float] | None) -> bool:
    """In rotation: SERVING, or no Health service at all (as gRPC's own client
    health checking), or checks off."""
    return result is None or result[0].serving or result[0].status == "UNIMPLEMENTED"


def no_answer(result: tuple[HealthStatus, float] | None) -> str | None:
    """Why the connection is lost when the check got no answer over it; else None."""
    if result is None or result[0].answered:
        return None
    return f"health check: {result[0].status}"


def verdict(result: tuple[HealthStatus, float]) -> tuple[str, bool, float, bool]:
    """HealthResult's fields: status, healthy, duration, answered."""
    return result[0].status, serving(result), result[1], result[0].answered
