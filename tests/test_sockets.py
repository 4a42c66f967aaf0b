"""The idle watcher's sleep on its connections (``_workers/sockets.py``): it finds
the sockets of the channels it watches (channelz ports, /proc), wakes when one of
them stirs (a GOAWAY, a close, a reply) or its bell rings, falls back to ticking
where it cannot find them all, ticks while traffic flows, and leaves nothing open
in a forked child. Linux only (elsewhere the watcher ticks: test_watch.py)."""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from grpc_pool._workers import sockets, watch
from grpc_pool.testing.echo import ECHO, EchoServer

from .conftest import wait_until

pytestmark = [
    pytest.mark.skipif(not sockets.available(), reason="epoll, eventfd and /proc: Linux"),
    pytest.mark.skipif(
        not watch.polling_supported(),
        reason=f"grpcio {grpc.__version__} < 1.80: the pool watches with subscribe()",
    ),
]


@pytest.fixture
def channels(server: EchoServer) -> Iterator[list[grpc.Channel]]:
    """Two raw channels READY on their own connections to ``server``."""
    made = [
        grpc.insecure_channel(server.target, options=[("grpc.use_local_subchannel_pool", 1)])
        for _ in range(2)
    ]
    for channel in made:
        grpc.channel_ready_future(channel).result(timeout=10)
    yield made
    for channel in made:
        channel.close()


@pytest.fixture
def wake() -> Iterator[sockets.SocketWake]:
    made = sockets.SocketWake()
    yield made
    made.close()


def test_proc_finds_a_tcp_connection_and_its_descriptor() -> None:
    """A loopback TCP connection's ports lead to its inode (/proc/net/tcp) and the
    inode to the descriptor holding it (/proc/self/fd); unknown ports to nothing."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname(), timeout=5)
        peer, _ = listener.accept()
        try:
            pair = (client.getsockname()[1], client.getpeername()[1])
            inodes = sockets.tcp_inodes({pair, (1, 2)})
            assert list(inodes) == [pair] and len(inodes[pair]) == 1
            held = sockets.descriptors(inodes[pair])
            assert held == {client.fileno(): inodes[pair][0]}
        finally:
            client.close()
            peer.close()


def test_arm_covers_ready_channels_and_a_stop_stirs_them(
    server: EchoServer, channels: list[grpc.Channel], wake: sockets.SocketWake
) -> None:
    """Arming succeeds when every READY channel's connection is found, fails when
    more READY channels are claimed than hold a connection; an armed sleep ends
    without a stir on its timeout or the bell, and with one when the server goes
    away (its GOAWAY and close on the sockets), after which every copy is closed."""
    target = server.target
    assert wake.arm({target: 2})
    assert not wake.arm({target: 3})
    assert not wake.arm({"127.0.0.1:1": 1})
    assert wake.arm({target: 2})
    assert not wake.sleep(0.0)
    wake.ring()
    assert not wake.sleep(30.0)  # the bell, not the timeout
    server.stop(0.5)
    assert wake.sleep(30.0)

    def released() -> bool:  # every copy let go: none keeps a closed connection open
        wake.sleep(0.0)
        wake.rearm()
        return not wake._copies

    wait_until(released, 10, "the copies of the closed connections to be closed")


def test_without_channelz_the_watcher_ticks_and_still_sees_a_server_leave(
    make_pool: Any, server: EchoServer
) -> None:
    """With channelz off its connections cannot be found: the watcher's arm fails,
    it never sleeps on the sockets, and a server's GOAWAY is still seen (ticking)."""
    pool = make_pool(server.target, size=2, options=[("grpc.enable_channelz", 0)])
    pool.wait_ready(timeout=10, min_ready=2)
    watcher = pool._writer._crew.watch
    wait_until(
        lambda: bool(watcher._armed_for) and not watcher._armed, 10, "an arm tried and failed"
    )
    assert watcher.socket_sleeps == 0
    server.stop(0.5)
    wait_until(lambda: pool.status().state == "down", 10, "status down")


def test_an_error_while_arming_is_logged_once_and_the_watcher_ticks(
    make_pool: Any, server: EchoServer, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    """An unexpected error finding the sockets never ends the watcher: it is logged
    once, the watcher lets the sockets go and ticks, and still sees a server leave."""

    def broken(self: sockets.SocketWake, ready: dict[str, int]) -> bool:
        raise OSError("no /proc today")

    monkeypatch.setattr(sockets.SocketWake, "arm", broken)
    caplog.set_level(logging.ERROR, logger="grpc_pool._workers.watch")
    pool = make_pool(server.target, size=2)
    pool.wait_ready(timeout=10, min_ready=2)
    watcher = pool._writer._crew.watch
    wait_until(lambda: watcher._wake is None, 10, "the watcher to give up sleeping")
    server.stop(0.5)
    wait_until(lambda: pool.status().state == "down", 10, "status down")
    assert watcher.socket_sleeps == 0
    assert caplog.text.count("sleeping on the connections failed") == 1


def test_traffic_makes_the_watcher_tick_instead_of_waking_per_reply(
    make_pool: Any, server: EchoServer
) -> None:
    """Replies stir the sockets: each sleep they end doubles the calm asked before
    the next one (up to CALM_MAX), so under traffic the watcher ticks; every RPC
    still succeeds, and once idle it sleeps on the sockets again."""
    pool = make_pool(server.target, size=2)
    pool.wait_ready(timeout=10, min_ready=2)
    watcher = pool._writer._crew.watch
    wait_until(lambda: watcher.socket_sleeps > 0, 10, "the watcher asleep on the sockets")
    echo = pool.channel.unary_unary(ECHO)
    deadline = time.monotonic() + 20
    while watcher._calm < 4 * watch.SLOW_TICK and time.monotonic() < deadline:
        assert echo(b"x", timeout=5) == b"x"
    assert watcher._calm >= 4 * watch.SLOW_TICK
    slept = watcher.socket_sleeps
    wait_until(lambda: watcher.socket_sleeps > slept, 15, "a sleep once idle")


_FORK_SCRIPT = """
import json, os, time
import grpc_pool
from grpc_pool._workers import sockets
from grpc_pool.testing.echo import EchoServer

def until(predicate):
    deadline = time.monotonic() + 10
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.01)
    return predicate()

sockets.SWEEP = 3600.0  # only the connections can wake the watcher
server = EchoServer().start()
pool = grpc_pool.Pool(server.target, size=2, insecure=True)
pool.wait_ready(timeout=10, min_ready=2)
watcher = pool._writer._crew.watch
asleep = until(lambda: watcher.socket_sleeps > 0)
wake, before = watcher._wake, watcher.socket_sleeps
pid = os.fork()
if pid == 0:
    os._exit(0 if wake._closed else 3)
_, status = os.waitpid(pid, 0)
again = until(lambda: watcher.socket_sleeps > before)  # the fork woke and parked it
server.stop(0.5)
down = until(lambda: pool.status().state == "down")
parent_open = not wake._closed
pool.close(grace=0)
print(json.dumps({"asleep": asleep, "child": os.waitstatus_to_exitcode(status),
                  "again": again, "down": down, "parent_open": parent_open}))
"""


def test_a_forked_child_closes_its_copies_and_the_parent_still_wakes() -> None:
    """In a forked child the hook closes the inherited epoll, bell and duplicates
    (exit 0 when it did), without removing the parent's epoll entries (shared with
    the child): the parent's watcher sleeps on the sockets again after the fork,
    with no sweep due for an hour, and a server's stop still wakes it."""
    done = subprocess.run(
        [sys.executable, "-c", _FORK_SCRIPT], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {
        "asleep": True,
        "child": 0,
        "again": True,
        "down": True,
        "parent_open": True,
    }, result
