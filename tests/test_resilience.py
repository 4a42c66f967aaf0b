"""Resilience under real faults (tests/faults.py proxy, real servers):
half-open connections, keepalive vs the server's ping policy, health checks over
the pooled channels, passive ejection, drain of streams, nothing leaked."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

import grpc_pool
from grpc_pool._channel.build import keepalive_options as _keepalive_options
from grpc_pool._workers import worker as _worker
from grpc_pool.testing.echo import ECHO, ECHO_STREAM, FAIL, SLOW, EchoServer

from .conftest import Recorder, wait_until
from .faults import FaultProxy


@pytest.fixture
def proxy(server: EchoServer) -> Iterator[FaultProxy]:
    with FaultProxy(server.target) as p:
        yield p


def test_blackhole_on_idle_channels_is_noticed_by_health_checks(
    make_pool: Any, proxy: FaultProxy
) -> None:
    """Idle, half-open connections (no RPC, no keepalive) leave the rotation once a
    health check times out; the pool reconnects once traffic passes again."""
    pool = make_pool(
        proxy.target,
        size=2,
        health_check_interval=0.3,
        health_check_timeout=0.5,
        connect_timeout=1.0,
    )
    pool.wait_ready(timeout=10, min_ready=2)
    proxy.blackhole()
    started = time.monotonic()
    wait_until(lambda: pool.status().state == "down", 15, "black-holed channels out")
    detected = time.monotonic() - started
    assert all(s.last_error for s in pool.stats().slots)
    proxy.pass_traffic()
    started = time.monotonic()
    assert pool.wait_ready(timeout=15, min_ready=2).state == "healthy"
    print(
        f"\nblack hole, idle, health 0.3s/0.5s: out of rotation after {detected:.2f}s, "
        f"healthy {time.monotonic() - started:.2f}s after traffic passes"
    )
    assert pool.get_channel().unary_unary(ECHO)(b"back", timeout=5) == b"back"


def test_blackhole_under_an_active_rpc_is_noticed_by_keepalive(
    make_pool: Any, proxy: FaultProxy
) -> None:
    """With an RPC in flight, keepalive pings find a black-holed connection: the RPC
    fails UNAVAILABLE long before its own deadline and the channel leaves rotation."""
    pool = make_pool(proxy.target, size=1, keepalive_time=0.5, keepalive_timeout=0.5)
    pool.wait_ready(timeout=10)
    call = pool.get_channel().unary_unary(SLOW).future(b"4", timeout=60)  # ends by itself
    wait_until(lambda: pool.stats().in_flight == 1, 5, "RPC in flight")
    proxy.blackhole()
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as info:
        call.result(timeout=30)
    print(
        f"\nblack hole under an RPC, keepalive 0.5s/0.5s: RPC failed after "
        f"{time.monotonic() - started:.2f}s"
    )
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
    wait_until(lambda: pool.status().state == "down", 10, "channel out of rotation")
    proxy.pass_traffic()
    pool.wait_ready(timeout=15)


def test_default_keepalive_is_safe_with_a_default_server() -> None:
    """Defaults: pings only while RPCs run, never on idle connections (a default
    server answers those with GOAWAY too_many_pings); ping timeout bounded too."""
    options = dict(_keepalive_options(grpc_pool.PoolConfig(target="x:1")))
    assert options == {
        "grpc.keepalive_time_ms": 30_000,
        "grpc.keepalive_timeout_ms": 10_000,
        "grpc.http2.ping_timeout_ms": 10_000,
        "grpc.keepalive_permit_without_calls": 0,
    }
    assert _keepalive_options(grpc_pool.PoolConfig(target="x:1", keepalive_time=None)) == []


@pytest.mark.parametrize("without_calls", [False, True], ids=["default", "idle-pings"])
def test_keepalive_and_the_servers_ping_policy(
    make_pool: Any, server: EchoServer, without_calls: bool
) -> None:
    """Scaled to 1 s pings, with grpcio's cap of 2 pings without data lifted: with the
    default (no pings without calls) idle channels keep their connections; pinging
    idle connections gets GOAWAY too_many_pings from a default grpcio server (the
    control that shows the test can see it)."""
    rec = Recorder()
    pool = make_pool(
        server.target,
        size=2,
        keepalive_time=1.0,
        keepalive_without_calls=without_calls,
        listeners=[rec],
        options=[("grpc.http2.max_pings_without_data", 0)],
    )
    pool.wait_ready(timeout=10, min_ready=2)
    if without_calls:
        wait_until(lambda: rec.named("channel_disconnected"), 15, "GOAWAY too_many_pings")
    else:
        time.sleep(4.0)  # 4 ping intervals: a GOAWAY would have come by now
        assert rec.named("channel_disconnected") == []
        assert pool.stats().disconnects == 0


def test_not_serving_takes_channels_out_and_serving_brings_them_back(
    make_pool: Any, server: EchoServer
) -> None:
    """Health checks run over each pooled channel: NOT_SERVING for the whole server
    means "down"; SERVING again means healthy, with events for each check."""
    rec = Recorder()
    pool = make_pool(
        server.target,
        size=2,
        health_check_interval=0.2,
        health_check_timeout=1.0,
        listeners=[rec],
    )
    pool.wait_ready(timeout=10, min_ready=2)
    assert {s.health for s in pool.stats().slots} == {"SERVING"}
    server.set_serving(False)
    started = time.monotonic()
    wait_until(lambda: pool.status().state == "down", 10, "down on NOT_SERVING")
    print(f"\nNOT_SERVING, health every 0.2s: down after {time.monotonic() - started:.2f}s")
    with pytest.raises(grpc_pool.NoChannelAvailable, match="NOT_SERVING"):
        pool.get_channel()
    server.set_serving(True)
    assert pool.wait_ready(timeout=10, min_ready=2).state == "healthy"
    checks = rec.named("health_check")
    assert {c.status for c in checks} >= {"SERVING", "NOT_SERVING"}
    assert all(c.healthy == (c.status == "SERVING") for c in checks)
    # the checks travel on the pooled connections themselves, not a side channel
    assert len(server.peers) <= pool.stats().connects


def test_a_server_that_is_never_serving_never_enters_rotation(
    make_pool: Any, server: EchoServer
) -> None:
    """A channel is checked before it is published: NOT_SERVING from the start = never
    ready; the slot keeps its one connection and checks again on it."""
    server.set_serving(False)
    rec = Recorder()
    pool = make_pool(server.target, size=1, health_check_interval=0.2, listeners=[rec])
    wait_until(lambda: len(rec.named("health_check")) >= 3, 10, "3 checks")
    assert pool.status().current_size == 0
    slot = pool.stats().slots[0]
    assert (slot.state, slot.connects, slot.failures) == ("unhealthy", 1, 0)
    assert "NOT_SERVING" in (slot.last_error or "")


def test_passive_ejection_replaces_a_channel_failing_unavailable(
    make_pool: Any, server: EchoServer
) -> None:
    """RPCs failing UNAVAILABLE on a channel whose connection looks fine: after N in
    a row the channel is replaced without waiting for the connectivity watcher."""
    pool = make_pool(server.target, size=1, eject_after_unavailable=3)
    pool.wait_ready(timeout=10)
    first = pool.get_channel()
    for _ in range(3):
        with pytest.raises(grpc.RpcError):
            first.unary_unary(FAIL)(b"UNAVAILABLE", timeout=5)
    wait_until(lambda: pool.stats().disconnects == 1, 10, "ejection")
    pool.wait_ready(timeout=10)
    slot = pool.stats().slots[0]
    assert slot.channel_id != first.channel_id
    assert "ejected" in (slot.last_error or "")
    assert first.unary_unary(ECHO)(b"grace", timeout=5) == b"grace"  # retired, not closed yet


def test_ejection_counts_only_unavailable_in_a_row(make_pool: Any, server: EchoServer) -> None:
    """A success or another error in between resets the count: no ejection."""
    pool = make_pool(server.target, size=1, eject_after_unavailable=3)
    pool.wait_ready(timeout=10)
    channel = pool.get_channel()
    for code in ("UNAVAILABLE", "UNAVAILABLE", "INTERNAL", "UNAVAILABLE", "UNAVAILABLE"):
        with pytest.raises(grpc.RpcError):
            channel.unary_unary(FAIL)(code.encode(), timeout=5)
    channel.unary_unary(ECHO)(b"ok", timeout=5)
    pool.scale_up(1)  # a writer round-trip: any ejection would have been posted before
    assert pool.stats().disconnects == 0 and pool._snapshot[0] is channel


def test_streams_on_retired_channels_finish_within_grace(
    make_pool: Any, server: EchoServer
) -> None:
    """Server-streaming RPCs started before scale_down and close run to their end."""
    pool = make_pool(server.target, size=3, retire_grace=10.0)
    pool.wait_ready(timeout=10, min_ready=3)
    streams = [c.unary_stream(ECHO_STREAM)(b"40", timeout=20) for c in pool._snapshot]
    received: list[int] = []

    def consume(stream: Any) -> None:
        received.append(sum(1 for _ in stream))

    readers = [threading.Thread(target=consume, args=(s,)) for s in streams]
    for t in readers:
        t.start()
    wait_until(lambda: pool.stats().in_flight == 3, 5, "streams in flight")
    pool.scale_down(2)
    pool.close(grace=10.0)
    for t in readers:
        t.join(20)
    assert received == [40, 40, 40]


def test_nothing_left_open_after_faults(
    make_pool: Any, proxy: FaultProxy, server: EchoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After resets, refused reconnects, a server restart and close(), every channel
    the pool ever built (published or not) is closed and unsubscribed, and no pool
    thread is alive (checked by the fixtures)."""
    built: list[Any] = []
    real_build = _worker.build_channel

    def recording_build(*args: Any) -> Any:
        channel = real_build(*args)
        built.append(channel)
        return channel

    monkeypatch.setattr(_worker, "build_channel", recording_build)
    pool = make_pool(proxy.target, size=3)
    pool.wait_ready(timeout=10, min_ready=3)
    first = {channel.channel_id for channel in pool._snapshot}
    # Refused reconnects lose every channel for sure (an IDLE channel that
    # reconnects at once is kept, so resets alone may replace none).
    proxy.refuse()
    proxy.reset_all()
    # Every slot, not 3 failures in all: two slots' quick retries can reach 3 before
    # the third slot tries, which then reconnects under its old channel.
    wait_until(
        lambda: all(slot.connect_failures for slot in pool.stats().slots),
        10,
        "a refused reconnect on every slot",
    )
    proxy.pass_traffic()
    pool.wait_ready(timeout=10, min_ready=3)
    assert not first & {channel.channel_id for channel in pool._snapshot}
    server.restart(down_for=0.2)
    pool.wait_ready(timeout=10, min_ready=3)
    pool.close(grace=1.0)
    assert len(built) >= 6
    for channel in built:
        state = channel._raw._connectivity_state
        assert not state.callbacks_and_connectivities
        assert channel.closed
        with pytest.raises(ValueError):  # grpcio's own channel is closed too
            channel._raw.unary_unary(ECHO)(b"x", timeout=1)
        with pytest.raises(grpc_pool.GrpcPoolError):  # and the pool refuses before it
            channel.unary_unary(ECHO)(b"x", timeout=1)
