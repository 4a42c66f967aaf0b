"""Connections per pooled channel from grpcio's channelz (display only).

grpcio has no public way to ask a ``grpc.Channel`` how many TCP connections it holds,
nor to map one to its channelz entry (channelz does not list channel args). With gRFC
A105 connection scaling a channel may hold up to K connections, so the pool takes the
channelz id of each channel it builds (``find_channel_id``, right after creating it,
under ``CREATION_LOCK``) and counts the sockets of its subchannels when ``stats()``
runs (``connections``). The pool's watcher reads the TCP ports of every connection of
the channels dialling its targets (``socket_ports``, see ``_workers/sockets.py``).
All use grpcio's private ``grpc._cython.cygrpc.channelz_*`` functions (JSON
strings); any failure, or a grpcio without them, gives None.
"""

from __future__ import annotations

import importlib
import json
import os
import threading
from typing import Any

__all__ = [
    "CREATION_LOCK",
    "channelz_enabled",
    "connections",
    "find_channel_id",
    "socket_ports",
]

# Held by build_channel around creating a channel and find_channel_id, so two pool
# builds cannot take each other's channel.
CREATION_LOCK = threading.Lock()
_PAGES = 64  # bound on top-channel pages read per lookup (100 channels a page)
_next_start = 0  # channel ids only grow: a new channel is past every id already matched


def _after_fork_in_child() -> None:
    # A parent thread may have held the lock at fork (a worker not parked in time).
    global CREATION_LOCK, _next_start
    CREATION_LOCK, _next_start = threading.Lock(), 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _cygrpc() -> Any:
    # private, untyped: every caller turns any failure into None
    return importlib.import_module("grpc._cython.cygrpc")


def channelz_enabled(options: Any) -> bool:
    """False when ``options`` turn channelz off (``grpc.enable_channelz`` 0)."""
    for key, value in options:
        name = key.decode("ascii", "replace") if isinstance(key, bytes) else key
        if name == "grpc.enable_channelz" and not value:
            return False
    return True


def _same_target(listed: object, target: str) -> bool:
    # channelz lists the canonical target: grpcio adds "dns:///" to one without a scheme.
    return listed in (target, f"dns:///{target}")


def find_channel_id(target: str) -> int | None:
    """The channelz id of the newest top channel dialling ``target``, None if none or
    channelz cannot be read. Call it under ``CREATION_LOCK`` right after creating the
    channel. Limitation: a channel created with the same target by code outside the
    pool at the same instant could be taken for the pool's; that only affects a
    displayed count."""
    global _next_start
    try:
        channels, _complete = _top_channels(_cygrpc(), _next_start)
        found = max((_id(c) for c in channels if _same_target(_target_of(c), target)), default=None)
        if found is not None:
            _next_start = found + 1
        return found
    except Exception:  # display only: never fail a build for this
        return None


def connections(channel_id: int) -> int | None:
    """Open connections (sockets) over the subchannels of channelz channel
    ``channel_id``; None when it cannot be read (closed channel, no channelz)."""
    try:
        cygrpc = _cygrpc()
        channel = json.loads(cygrpc.channelz_get_channel(channel_id))["channel"]
        return len(_socket_ids(cygrpc, channel))
    except Exception:  # display only
        return None


Ports = tuple[int, int]  # a TCP connection's (local port, remote port)


def socket_ports(targets: set[str]) -> list[tuple[str, list[Ports]]] | None:
    """For every top channel dialling one of ``targets``: its target and the ports of
    its connections (over its subchannels). None when channelz cannot be read."""
    try:
        cygrpc = _cygrpc()
        channels, complete = _top_channels(cygrpc, 0)
        if not complete:  # more channels than pages read: not every one was seen
            return None
        found: list[tuple[str, list[Ports]]] = []
        for channel in channels:
            listed = _target_of(channel)
            target = next((t for t in targets if _same_target(listed, t)), None)
            if target is not None:
                found.append((target, [_ports(cygrpc, i) for i in _socket_ids(cygrpc, channel)]))
        return found
    except Exception:  # private and untyped: the caller polls instead
        return None


def _top_channels(cygrpc: Any, start: int) -> tuple[list[dict[str, Any]], bool]:
    """The top channels from id ``start`` on, at most ``_PAGES`` pages; whether that
    was every one."""
    channels: list[dict[str, Any]] = []
    for _ in range(_PAGES):
        page = json.loads(cygrpc.channelz_get_top_channels(start))
        listed = page.get("channel", [])
        channels += listed
        start = max([start, *(_id(c) + 1 for c in listed)])
        if page.get("end", True) or not listed:
            return channels, True
    return channels, False


def _id(channel: dict[str, Any]) -> int:
    return int(channel["ref"]["channelId"])


def _target_of(channel: dict[str, Any]) -> object:
    return channel.get("data", {}).get("target")


def _socket_ids(cygrpc: Any, channel: dict[str, Any]) -> list[int]:
    """The channelz ids of a channel's connections (over its subchannels)."""
    ids = []
    for ref in channel.get("subchannelRef", []):
        sub = json.loads(cygrpc.channelz_get_subchannel(int(ref["subchannelId"])))
        ids += [int(r["socketId"]) for r in sub["subchannel"].get("socketRef", [])]
    return ids


def _ports(cygrpc: Any, socket_id: int) -> Ports:
    socket = json.loads(cygrpc.channelz_get_socket(socket_id))["socket"]
    local = socket["local"]["tcpipAddress"]  # KeyError: not TCP
    return int(local["port"]), int(socket["remote"]["tcpipAddress"]["port"])
