"""gRFC A105 connection scaling (grpcio >= 1.84) in ``options``: each pooled channel
may open up to K connections; the stream-limit warning counts K x stream_limit."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from grpc_pool._channel import channelz
from grpc_pool._config.config import PoolConfig
from grpc_pool._config.scaling import connections_per_channel, grpcio_has_a105
from grpc_pool._contract.events import Dispatcher
from grpc_pool._writer.timers import Timers, channel_stream_limit, near_stream_limit
from grpc_pool.testing.echo import SLOW, EchoServer


def scaling(k: Any, **extra: Any) -> tuple[str, str]:
    return (
        "grpc.service_config",
        json.dumps({"connectionScaling": {**extra, "maxConnectionsPerSubchannel": k}}),
    )


@pytest.mark.parametrize(
    ("options", "version", "expected"),
    [
        ((), "1.85.1", 1),
        ((scaling(4),), "1.85.1", 4),
        ((scaling(4),), "1.84.0", 4),
        ((scaling(4),), "1.83.9", 1),  # grpcio before A105 ignores it
        ((scaling(20),), "1.85.1", 10),  # the default cap
        ((scaling(20), ("grpc.max_connections_per_subchannel_cap", 20)), "1.85.1", 20),
        ((scaling(4), (b"grpc.max_connections_per_subchannel_cap", 2)), "1.85.1", 2),
        (
            (
                (
                    "grpc.service_config",
                    b'{"connectionScaling": {"maxConnectionsPerSubchannel": 3}}',
                ),
            ),
            "1.85.1",
            3,
        ),
        (
            (
                (
                    "grpc.service_config",
                    '{"connection_scaling": {"max_connections_per_subchannel": 4}}',
                ),
            ),
            "1.85.1",
            1,  # snake_case: grpcio ignores it silently, so does the count
        ),
        ((("grpc.service_config", "not json"),), "1.85.1", 1),
        ((scaling(0),), "1.85.1", 1),
        ((scaling(True),), "1.85.1", 1),
        ((scaling("4"),), "1.85.1", 1),
    ],
)
def test_connections_per_channel_reads_the_service_config(
    options: Any, version: str, expected: int
) -> None:
    """K is read as grpcio reads it: camelCase only, capped (10 unless the cap option
    says otherwise), 1 without it or on grpcio < 1.84."""
    assert connections_per_channel(options, version) == expected


def test_grpcio_has_a105_versions() -> None:
    """1.84 is the first grpcio with connectionScaling; odd version strings are 'no'."""
    assert grpcio_has_a105("1.84.0") and grpcio_has_a105("2.0.0")
    assert not grpcio_has_a105("1.83.1") and not grpcio_has_a105("dev")


def test_stream_limit_rule_counts_k_connections() -> None:
    """With K connections a channel holds K x stream_limit streams: 90 per channel is
    near a limit of 100 for one connection, not for four."""
    assert channel_stream_limit(100, 1) == 100 and channel_stream_limit(100, 4) == 400
    assert near_stream_limit(90, channel_stream_limit(100, 1))
    assert not near_stream_limit(90, channel_stream_limit(100, 4))
    assert near_stream_limit(320, channel_stream_limit(100, 4))


def test_timers_use_k_times_stream_limit() -> None:
    """The writer's autoscale check warns from K x stream_limit (grpcio >= 1.84) and
    from stream_limit alone without connectionScaling."""
    events = Dispatcher("t")
    plain = Timers(PoolConfig("127.0.0.1:1", stream_limit=50), "t", events, lambda: None)
    scaled = Timers(
        PoolConfig("127.0.0.1:1", stream_limit=50, options=[scaling(4)]), "t", events, lambda: None
    )
    assert plain._limit == 50
    assert scaled._limit == (200 if grpcio_has_a105() else 50)


@pytest.mark.skipif(not grpcio_has_a105(), reason="connectionScaling needs grpcio >= 1.84")
def test_pooled_channels_open_k_connections_past_the_stream_limit(make_pool: Any) -> None:
    """A pool of 2 with connectionScaling K=3 against a server allowing 5 streams per
    connection: 24 slow RPCs at once all succeed, over more TCP connections (peers on
    the server) than the pool has channels; ``stats()`` shows those connections per
    slot (from channelz) while the RPCs run, as many as the server sees."""
    server = EchoServer(workers=40, options=[("grpc.max_concurrent_streams", 5)]).start()
    try:
        pool = make_pool(server.target, size=2, options=[scaling(3)])
        pool.wait_ready(timeout=10, min_ready=2)
        server.peers.clear()
        assert all(s.connections == 1 for s in pool.stats().slots)
        calls = [pool.get_channel().unary_unary(SLOW).future(b"1.0", timeout=30) for _ in range(24)]
        stats = pool.stats()
        for _ in range(40):  # bounded: until all 2 x K=3 are open (or the RPCs end)
            if stats.connections == 6 or calls[0].done():
                break
            time.sleep(0.02)
            stats = pool.stats()
        seen = [s.connections for s in stats.slots]
        assert all(s.connections is not None for s in stats.slots), seen
        assert stats.connections == sum(s.connections or 0 for s in stats.slots)
        assert [c.result(timeout=30) for c in calls] == [b"1.0"] * 24
        assert 2 < len(server.peers) <= 6, server.peers
        after = pool.stats()  # the connections stay open once the RPCs are done
        print(
            "in flight: connections per slot",
            seen,
            "| after:",
            [s.connections for s in after.slots],
            "server peers",
            len(server.peers),
        )
        assert 2 < (stats.connections or 0) <= len(server.peers)
        assert after.connections == len(server.peers)
    finally:
        server.stop()


def test_connections_unknown_without_scaling_and_channelz_untouched(
    make_pool: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without connectionScaling (or with channelz off) a pool never reads channelz:
    with the channelz lookups made to raise, it still builds its channels, and
    ``SlotStats.connections`` / ``PoolStats.connections`` are None."""

    def broken(*_args: Any) -> None:
        raise AssertionError("channelz read without connection scaling")

    monkeypatch.setattr(channelz, "find_channel_id", broken)
    monkeypatch.setattr(channelz, "connections", broken)
    with EchoServer() as server:
        for options in ([], [scaling(3), ("grpc.enable_channelz", 0)]):
            pool = make_pool(server.target, size=2, options=options)
            pool.wait_ready(timeout=10, min_ready=2)
            stats = pool.stats()
            assert [s.connections for s in stats.slots] == [None, None]
            assert stats.connections is None


def test_channelz_failure_never_fails_a_build(monkeypatch: pytest.MonkeyPatch) -> None:
    """Channelz unreadable (no private API, an error): the channel id lookup and the
    count are None, no exception."""

    def broken() -> Any:
        raise ImportError("no cygrpc")

    monkeypatch.setattr(channelz, "_cygrpc", broken)
    assert channelz.find_channel_id("127.0.0.1:1") is None
    assert channelz.connections(1) is None
    assert channelz.channelz_enabled([("grpc.enable_channelz", 1)])
    assert not channelz.channelz_enabled([(b"grpc.enable_channelz", 0)])
