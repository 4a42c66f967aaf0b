"""A lost connection leaves the rotation at once: a channel whose connection
closed (GOAWAY, reset) is out of rotation while it reconnects, as long as
another channel is ready; a failed pick on it tells its worker at once."""

from __future__ import annotations

import collections
import time
from collections.abc import Sequence
from typing import Any

import grpc_pool
from grpc_pool._config.config import PoolConfig
from grpc_pool._contract.commands import Lost, Progress, Register
from grpc_pool._contract.state import SlotStatus
from grpc_pool._writer.layout import Layout
from grpc_pool.testing import ECHO, EchoServer

from .conftest import FAST, wait_until


class _Channel:
    """What the layout reads of a channel."""

    def __init__(self, channel_id: str) -> None:
        self.channel_id = channel_id
        self.load = 0
        self.target = "x"


def _layout(size: int) -> tuple[Layout, list[Any]]:
    layout = Layout(PoolConfig("127.0.0.1:1", size=size, insecure=True), "t", ())
    channels = [_Channel(f"c{s}") for s in range(size)]
    for slot in range(size):
        layout.add_slot(slot)
        layout.register(Register(None, slot, channels[slot], 0.0), closing=False)
    return layout, channels


def _reconnecting(layout: Layout, slot: int) -> None:
    layout.progress(Progress(None, slot, SlotStatus.RECONNECTING, error="GOAWAY"))


def test_reconnecting_channel_leaves_rotation_while_others_are_ready() -> None:
    """RECONNECTING (the connection under a ready channel closed) takes the channel
    out of the rotation; its READY Register puts it back."""
    layout, channels = _layout(3)
    _reconnecting(layout, 0)
    assert channels[0] not in layout.channels()
    assert set(layout.channels()) == {channels[1], channels[2]}
    layout.register(Register(None, 0, channels[0], 0.0), closing=False)
    assert set(layout.channels()) == set(channels)


def test_last_ready_channel_stays_while_reconnecting() -> None:
    """The last channel in rotation stays there while it reconnects (better than
    none: RPCs wait or fail as gRPC decides), and when the last ready one is lost
    the reconnecting ones come back."""
    layout, channels = _layout(3)
    _reconnecting(layout, 0)
    _reconnecting(layout, 1)
    _reconnecting(layout, 2)
    assert layout.channels() == (channels[2],)
    layout.lost(Lost(None, 2, channels[2], "gone", 0.1))
    assert set(layout.channels()) == {channels[0], channels[1]}


class _Counting:
    """Round robin that counts the picks per channel target."""

    def __init__(self) -> None:
        self.picks: collections.Counter[str] = collections.Counter()
        self._turn = 0

    def pick(self, channels: Sequence[Any]) -> Any:
        self._turn += 1
        channel = channels[self._turn % len(channels)]
        self.picks[channel.target] += 1
        return channel


def test_no_pick_onto_a_stopped_backend_while_others_are_ready() -> None:
    """After the backend behind two of four pooled channels stops (GOAWAY), every
    RPC succeeds, its channels leave the rotation, and then no RPC is picked onto
    them while the other backend's channels are ready."""
    strategy = _Counting()
    with EchoServer() as a, EchoServer() as b:
        target = f"ipv4:127.0.0.1:{a.port},127.0.0.1:{b.port}"
        with grpc_pool.Pool(target, size=4, strategy=strategy, **FAST) as pool:
            pool.wait_ready(timeout=10)
            wait_until(lambda: len(pool._snapshot) == 4, 10)
            dead = next(c.target for c in pool._snapshot if c.target.endswith(f":{a.port}"))
            alive = next(c.target for c in pool._snapshot if c.target.endswith(f":{b.port}"))
            a.stop(1.0)
            deadline = time.monotonic() + 10
            while any(c.target == dead for c in pool._snapshot) and time.monotonic() < deadline:
                assert pool.channel.unary_unary(ECHO)(b"x", timeout=5) == b"x"
            assert not any(c.target == dead for c in pool._snapshot)
            strategy.picks.clear()
            for _ in range(200):
                assert pool.channel.unary_unary(ECHO)(b"x", timeout=5) == b"x"
            assert strategy.picks[dead] == 0
            assert strategy.picks[alive] == 200
