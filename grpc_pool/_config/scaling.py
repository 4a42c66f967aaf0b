"""gRFC A105 connection scaling (grpcio >= 1.84): how many connections one channel may
open to one address, read from the pool's ``options``.

The service config ``{"connectionScaling": {"maxConnectionsPerSubchannel": K}}`` lets
a subchannel open another connection when every open one is at the server's stream
limit, up to K, capped by ``grpc.max_connections_per_subchannel_cap`` (default 10).
grpcio reads the camelCase names only; anything else is ignored, as here.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import grpc

__all__ = ["A105_MIN_GRPCIO", "DEFAULT_CAP", "connections_per_channel", "grpcio_has_a105"]

A105_MIN_GRPCIO = (1, 84)
DEFAULT_CAP = 10  # client_channel.cc: max_connections_per_subchannel_cap value_or(10)


def grpcio_has_a105(version: str = grpc.__version__) -> bool:
    """True when this grpcio reads ``connectionScaling`` (1.84 and later)."""
    try:
        major, minor = (int(part) for part in version.split(".")[:2])
    except ValueError:
        return False
    return (major, minor) >= A105_MIN_GRPCIO


def _key(name: Any) -> str:
    return name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name)


def connections_per_channel(
    options: Sequence[tuple[Any, Any]], version: str = grpc.__version__
) -> int:
    """At most how many connections one channel opens to one address: K from the
    ``grpc.service_config`` option's ``connectionScaling``, capped; 1 without it, on
    grpcio < 1.84, or when the service config is not JSON grpcio would accept."""
    if not grpcio_has_a105(version):
        return 1
    found: dict[str, Any] = {_key(k): v for k, v in options}
    raw = found.get("grpc.service_config")
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", "replace")
    if not isinstance(raw, str):
        return 1
    try:
        body = json.loads(raw)
    except ValueError:
        return 1
    scaling = body.get("connectionScaling") if isinstance(body, dict) else None
    k = scaling.get("maxConnectionsPerSubchannel") if isinstance(scaling, dict) else None
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        return 1
    cap = found.get("grpc.max_connections_per_subchannel_cap", DEFAULT_CAP)
    if isinstance(cap, bool) or not isinstance(cap, int) or cap < 1:
        cap = DEFAULT_CAP
    return min(k, cap)
