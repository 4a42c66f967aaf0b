"""What reaches a worker's thread besides its own calls: connectivity changes of
its channels (put by the pool's watcher, ``watch.py``, or on its ``subscribe()``
fallback by gRPC's thread), RPC outcomes on them, and the signals of the writer
and the fork."""

from __future__ import annotations

import grpc

__all__ = [
    "EJECT",
    "GRANT",
    "LOST",
    "MOVED",
    "MOVED_REASON",
    "PAUSE",
    "REFRESH",
    "Item",
    "Move",
    "Signal",
]


class Signal:
    """Non-connectivity items on a worker's queue."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


PAUSE = Signal("pause")
EJECT = Signal("eject")  # with a channel id: its RPCs keep failing UNAVAILABLE
# With a channel id: an RPC on it failed to connect ("failed to connect to all
# addresses"): its backend is gone; out of rotation now, not at the next tick.
LOST = Signal("an RPC failed to connect: backend gone")
GRANT = Signal("grant")  # the writer's go-ahead for a max-age refresh
MOVED = Signal("moved")  # the worker's answer after the writer gave a new address
REFRESH = "refresh"  # the watch's answer when the channel is due for replacement
MOVED_REASON = "moved to another address"


class Move:
    """From the writer: connect to ``address`` from now on (None: the target as given)."""

    __slots__ = ("address",)

    def __init__(self, address: str | None) -> None:
        self.address = address


Item = tuple[str, "grpc.ChannelConnectivity | Signal"] | Signal | Move | None  # None: stop
