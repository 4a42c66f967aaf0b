"""The pool as one grpc.Channel (Pool.channel, grpc_pool.insecure_channel): every RPC
picks a pooled channel; multi-callables built once survive every layout change."""

from __future__ import annotations

import gc
import logging
import subprocess
import sys
import textwrap
import threading
from typing import Any

import grpc
import pytest

import grpc_pool
from grpc_pool.testing import CHAT, COLLECT, ECHO, ECHO_STREAM, PEER, SLOW, EchoServer

from .conftest import FAST, REGISTERED, wait_until


def test_pool_channel_is_one_grpc_channel(make_pool: Any, server: EchoServer) -> None:
    """pool.channel is a grpc.Channel, the same object on every access, and its
    multi-callables are cached by value (the same arguments give the same one)."""
    pool = make_pool(server.target, size=2)
    channel = pool.channel
    assert isinstance(channel, grpc.Channel) and isinstance(channel, grpc_pool.PoolChannel)
    assert pool.channel is channel and channel.pool is pool
    assert channel.unary_unary(ECHO) is channel.unary_unary(ECHO)
    assert channel.unary_unary(ECHO, _registered_method=True) is not channel.unary_unary(ECHO)
    assert channel.unary_stream(ECHO) is not channel.unary_unary(ECHO)


def test_rpcs_spread_over_every_connection(make_pool: Any, server: EchoServer) -> None:
    """One multi-callable built once sends its RPCs over all the pool's connections
    (distinct peers on the server), and stats() counts every one of them."""
    pool = make_pool(server.target, size=4)
    pool.wait_ready(timeout=10, min_ready=4)
    peer = pool.channel.unary_unary(PEER)
    peers = {peer(b"", timeout=5) for _ in range(40)}
    assert len(peers) == 4
    assert pool.stats().rpcs_total == 40
    assert pool.stats().in_flight == 0


def test_every_rpc_kind_and_call_style(make_pool: Any, server: EchoServer) -> None:
    """Unary (call, with_call, future), server streaming, client streaming and bidi
    all work through pool.channel, and the in-flight count returns to 0."""
    pool = make_pool(server.target, size=2)
    channel = pool.channel
    echo = channel.unary_unary(ECHO)
    assert echo(b"a", timeout=5) == b"a"
    response, call = echo.with_call(b"b", timeout=5)
    assert response == b"b" and call.code() is grpc.StatusCode.OK
    assert echo.future(b"c", timeout=5).result(timeout=5) == b"c"
    assert list(channel.unary_stream(ECHO_STREAM)(b"3", timeout=5)) == [b"3"] * 3
    assert list(channel.stream_stream(CHAT)(iter([b"x", b"y"]), timeout=5)) == [b"x", b"y"]
    collect = channel.stream_unary(COLLECT)
    assert collect(iter([b"a", b"b"]), timeout=5) == b"ab"
    assert collect.with_call(iter([b"c"]), timeout=5)[0] == b"c"
    assert collect.future(iter([b"d"]), timeout=5).result(timeout=5) == b"d"
    wait_until(lambda: pool.stats().in_flight == 0, what="in-flight back to 0")
    assert pool.stats().rpcs_total == 8


def test_first_rpc_waits_for_the_first_connection(server: EchoServer) -> None:
    """A stub built right after Pool() works at once, as on a grpcio channel: while
    the pool makes its first connections an RPC waits instead of failing."""
    for _ in range(5):
        with grpc_pool.Pool(server.target, size=4, **FAST) as pool:
            assert pool.channel.unary_unary(ECHO)(b"now", timeout=10) == b"now"


def test_nothing_ready_fails_unavailable_at_once(make_pool: Any, dead_target: str) -> None:
    """With no channel ready after a failed attempt, an RPC fails at once with a
    grpc.RpcError UNAVAILABLE naming the pool and its last error (a failed future
    for future()); code that catches grpc.RpcError handles it."""
    pool = make_pool(dead_target, size=2)
    wait_until(lambda: pool.stats().connect_failures > 0, what="a failed attempt")
    echo = pool.channel.unary_unary(ECHO)
    with pytest.raises(grpc.RpcError) as caught:
        echo(b"x", timeout=5)
    error = caught.value
    assert isinstance(error, grpc_pool.NoChannelAvailable) and isinstance(error, grpc.Call)
    assert error.code() is grpc.StatusCode.UNAVAILABLE
    assert pool.name in error.details() and "last errors" in error.details()
    future = echo.future(b"x", timeout=5)
    assert future.done() and future.code() is grpc.StatusCode.UNAVAILABLE
    with pytest.raises(grpc_pool.NoChannelAvailable):
        future.result()
    with pytest.raises(grpc.RpcError):
        list(pool.channel.unary_stream(ECHO_STREAM)(b"2"))


def test_wait_for_ready_waits_within_the_rpc_timeout(make_pool: Any, dead_target: str) -> None:
    """wait_for_ready=True waits for a ready channel up to the RPC's timeout, then
    fails DEADLINE_EXCEEDED (the pool never became ready)."""
    pool = make_pool(dead_target, size=1)
    with pytest.raises(grpc.RpcError) as caught:
        pool.channel.unary_unary(ECHO)(b"x", timeout=0.3, wait_for_ready=True)
    assert caught.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED


def test_wait_for_ready_is_woken_when_a_channel_comes(make_pool: Any) -> None:
    """An RPC with wait_for_ready=True and no timeout, made while the server is down,
    completes once the server is up (the writer's publish wakes it)."""
    server = EchoServer()
    server.start()
    target = server.target
    server.stop()
    pool = make_pool(target, size=1)
    wait_until(lambda: pool.stats().connect_failures > 0, what="a failed attempt")
    result: list[bytes] = []
    caller = threading.Thread(
        target=lambda: result.append(pool.channel.unary_unary(ECHO)(b"late", wait_for_ready=True))
    )
    caller.start()
    try:
        server.start()
        caller.join(15)
        assert result == [b"late"]
    finally:
        server.stop()
        caller.join(5)


def test_built_once_survives_resize_refresh_and_reconnect(
    server: EchoServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Multi-callables built once keep working across scale down/up, max-age
    refresh and a server restart: no ValueError, never a retired channel. The one
    failure allowed is the documented one: an RPC still running when its retired
    channel's grace (0.1 s here, so that the refreshes keep coming) runs out is
    cancelled by the close, and the pool logs that close with its RPC count."""
    caplog.set_level(logging.INFO, logger="grpc_pool._writer.retire")
    cut_off: list[grpc.RpcError] = []

    def echo_ok() -> None:
        try:
            assert echo(b"x", timeout=5, wait_for_ready=True) == b"x"
        except grpc.RpcError as error:
            if error.code() is not grpc.StatusCode.CANCELLED:
                raise
            cut_off.append(error)

    with grpc_pool.Pool(
        server.target, size=3, max_connection_age=0.3, **{**FAST, "retire_grace": 0.1}
    ) as pool:
        echo = pool.channel.unary_unary(ECHO, **REGISTERED)
        stream = pool.channel.unary_stream(ECHO_STREAM, **REGISTERED)
        pool.wait_ready(timeout=10, min_ready=3)
        first = {c.channel_id for c in pool._snapshot}
        for step in range(6):
            if step == 2:
                pool.scale_down(2)
            if step == 3:
                server.restart(down_for=0.2)
            if step == 4:
                pool.scale_up(3)
            for _ in range(50):
                echo_ok()
            assert list(stream(b"2", timeout=5, wait_for_ready=True)) == [b"2", b"2"]
            wait_until(lambda: pool.stats().retiring == 0, what="retired channels closed")
        # Max-age refreshes one slot at a time: wait for it rather than for the loop's
        # length (under load the loop can end before the last first channel's turn).
        wait_until(
            lambda: not first & {c.channel_id for c in pool._snapshot},
            what="every first channel replaced by max-age refresh",
        )
        assert echo(b"x", timeout=5, wait_for_ready=True) == b"x"
    closed_busy = sum(
        record.args[2]  # type: ignore[index,misc]
        for record in caplog.records
        if "still in flight after the grace" in record.getMessage()
    )
    assert all(error.details() == "Channel closed!" for error in cut_off), cut_off
    assert len(cut_off) <= closed_busy, (cut_off, closed_busy)


def test_retired_channel_refuses_instead_of_crashing(tmp_path: Any) -> None:
    """Building a registered method (what generated stubs do) or calling on a pooled
    channel that the pool has retired and closed raises ChannelRetired/PoolClosed,
    never reaches grpcio (1.85 dies with SIGSEGV there). In a subprocess, so that a
    crash shows as an exit code. (Transparent retry off: with it on, a blocking
    unary call refused there goes to a ready channel instead, tested below.)"""
    script = f"REGISTERED = {REGISTERED!r}\n" + textwrap.dedent(
        """
        import time
        import grpc, grpc_pool
        from grpc_pool.testing import ECHO, EchoServer

        with EchoServer() as server:
            pool = grpc_pool.Pool(
                server.target, size=2, insecure=True, retire_grace=0.0, transparent_retry=False
            )
            pool.wait_ready(timeout=10, min_ready=2)
            held = list(pool._snapshot)
            prebuilt = {c: c.unary_unary(ECHO, **REGISTERED) for c in held}
            pool.scale_down(1)
            retired = next(c for c in held if c not in pool._snapshot)
            deadline = time.monotonic() + 10
            while not retired.closed and time.monotonic() < deadline:
                time.sleep(0.01)
            for attempt in (
                lambda: retired.unary_unary("/x.Y/Z", **REGISTERED),
                lambda: retired.unary_unary(ECHO)(b"x", timeout=1),
                lambda: prebuilt[retired](b"x", timeout=1),
                lambda: prebuilt[retired].future(b"x", timeout=1),
            ):
                try:
                    attempt()
                except grpc_pool.ChannelRetired as error:
                    assert isinstance(error, grpc.RpcError)
                    print("refused")
            pool.close()
            kept = next(c for c in held if c is not retired)
            try:
                kept.unary_unary("/x.Y/W", **REGISTERED)
            except grpc_pool.PoolClosed:
                print("closed")
        """
    )
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["refused"] * 4 + ["closed"]


def test_third_party_close_does_not_close_a_pooled_channel(
    make_pool: Any, server: EchoServer
) -> None:
    """channel._close() (grpc-requests calls it on the channels it was given) and
    close() leave the pooled channel open and in rotation."""
    pool = make_pool(server.target, size=1)
    pool.wait_ready(timeout=10)
    channel = pool.get_channel()
    channel._close()
    channel.close()
    assert not channel.closed
    assert channel.unary_unary(ECHO)(b"ok", timeout=5) == b"ok"
    assert pool.get_channel() is channel and pool.status().state == "healthy"


def test_pool_channel_close_does_nothing_but_constructors_own_their_pool(
    server: EchoServer,
) -> None:
    """pool.channel.close() and its with-block leave the pool open; the channel of
    grpc_pool.insecure_channel owns a new pool that its close()/with exit closes."""
    with grpc_pool.Pool(server.target, size=1, **FAST) as pool:
        with pool.channel as channel:
            channel.close()
        assert not pool.closed
        assert pool.channel.unary_unary(ECHO)(b"still", timeout=5) == b"still"
    with grpc_pool.insecure_channel(server.target, size=2, name="owned") as owned:
        assert owned.pool.config.insecure and owned.pool.name == "owned"
        assert owned.unary_unary(ECHO)(b"one-line", timeout=5) == b"one-line"
    assert owned.pool.closed
    with pytest.raises(grpc_pool.PoolClosed) as caught:
        owned.unary_unary(ECHO)(b"after")
    assert caught.value.code() is grpc.StatusCode.CANCELLED
    with pytest.raises(grpc_pool.InvalidConfig, match="insecure"):
        grpc_pool.insecure_channel(server.target, insecure=False)


def test_secure_channel_constructor_with_grpc_signature(server: EchoServer) -> None:
    """secure_channel(target, credentials, options, compression) takes grpcio's
    positional arguments; the pool uses those credentials (TLS against a plaintext
    server never gets ready) and the options and compression reach the config."""
    credentials = grpc.ssl_channel_credentials()
    options = [("grpc.max_receive_message_length", 1 << 20)]
    channel = grpc_pool.secure_channel(
        server.target, credentials, options, grpc.Compression.Gzip, size=1, **_no_insecure(FAST)
    )
    try:
        config = channel.pool.config
        assert config.credentials is credentials and not config.insecure
        assert tuple(config.options) == tuple(options)
        assert config.compression is grpc.Compression.Gzip
        wait_until(lambda: channel.pool.stats().connect_failures > 0, what="a TLS failure")
        assert channel.pool.status().current_size == 0
    finally:
        channel.close()


def _no_insecure(options: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in options.items() if k != "insecure"}


def test_compression_option_applies_to_every_pooled_channel(server: EchoServer) -> None:
    """compression= is a PoolConfig field, checked at construction, and RPCs work
    with it on every pooled channel."""
    with pytest.raises(grpc_pool.InvalidConfig, match="compression"):
        grpc_pool.PoolConfig(target=server.target, compression="gzip")  # type: ignore[arg-type]
    with grpc_pool.insecure_channel(server.target, None, grpc.Compression.Gzip, size=2) as channel:
        echo = channel.unary_unary(ECHO)
        assert [echo(b"z" * 1000, timeout=5) for _ in range(4)] == [b"z" * 1000] * 4


def test_connectivity_follows_the_pool(server: EchoServer) -> None:
    """subscribe() reports READY once a channel is ready and SHUTDOWN once the pool
    closes; grpc.channel_ready_future(pool.channel) resolves; the delivery thread ends."""
    states: list[grpc.ChannelConnectivity] = []
    seen = threading.Condition()

    def record(state: grpc.ChannelConnectivity) -> None:
        with seen:
            states.append(state)
            seen.notify_all()

    pool = grpc_pool.Pool(server.target, size=2, **FAST)
    try:
        grpc.channel_ready_future(pool.channel).result(timeout=10)
        pool.channel.subscribe(record, try_to_connect=True)
        with seen:
            assert seen.wait_for(lambda: grpc.ChannelConnectivity.READY in states, 10)
    finally:
        pool.close(grace=0)
    with seen:
        assert seen.wait_for(lambda: states[-1] is grpc.ChannelConnectivity.SHUTDOWN, 10)
    assert states[0] in (grpc.ChannelConnectivity.CONNECTING, grpc.ChannelConnectivity.READY)


def test_connectivity_reports_transient_failure_when_down(make_pool: Any, dead_target: str) -> None:
    """A pool whose attempts fail reports TRANSIENT_FAILURE; unsubscribe stops delivery."""
    pool = make_pool(dead_target, size=1)
    states: list[grpc.ChannelConnectivity] = []
    pool.channel.subscribe(states.append)
    wait_until(
        lambda: grpc.ChannelConnectivity.TRANSIENT_FAILURE in states, what="TRANSIENT_FAILURE"
    )
    pool.channel.unsubscribe(states.append)
    wait_until(lambda: pool.channel._watch.thread is None, what="the delivery thread to end")


def test_caches_are_bounded(make_pool: Any, server: EchoServer) -> None:
    """Code that builds a new serializer or stub factory per call does not grow memory:
    pool.channel's multi-callables and pool.stub()'s per-channel stubs are bounded."""
    pool = make_pool(server.target, size=1)
    pool.wait_ready(timeout=10)
    for i in range(600):
        pool.channel.unary_unary(ECHO, request_serializer=lambda b, i=i: b)
    assert len(pool.channel._callables) <= 256
    for _ in range(600):
        pool.stub(lambda channel: channel)
    assert len(pool.get_channel()._stubs) <= 256
    echo = pool.channel.unary_unary(ECHO, request_serializer=lambda b: b)
    for _ in range(600):
        echo(b"x", timeout=5)
    assert len(pool.get_channel()._callables) <= 256


def test_dropped_streams_are_cancelled(make_pool: Any) -> None:
    """A stream the caller drops is cancelled as on a raw grpcio channel: against a
    server allowing 10 concurrent streams, 12 abandoned long streams on one
    connection leave room for a unary call, and in-flight returns to 0."""
    server = EchoServer(options=[("grpc.max_concurrent_streams", 10)]).start()
    try:
        pool = make_pool(server.target, size=1)
        pool.wait_ready(timeout=10)
        stream = pool.channel.unary_stream(ECHO_STREAM)
        for _ in range(12):
            for _reply in stream(b"100000", timeout=30):
                break
            gc.collect()
            # Without cancellation the count would stay up (and the 11th would block).
            wait_until(lambda: pool.stats().in_flight == 0, 5, "the dropped stream ended")
        assert pool.channel.unary_unary(ECHO)(b"room", timeout=5) == b"room"
        future = pool.channel.unary_unary(SLOW).future(b"30", timeout=60)
        del future
        gc.collect()
        # Long before the 30 s the dropped future would take if it were not cancelled.
        wait_until(lambda: pool.stats().in_flight == 0, 5, "dropped calls no longer counted")
    finally:
        server.stop()


def test_message_size_limits_follow_the_pool_options() -> None:
    """A 5 MiB response fails through a default pool (grpcio's 4 MiB receive limit,
    RESOURCE_EXHAUSTED) and passes with the options GAPIC sets on its own channels
    (docs/channel.md): the options reach every pooled channel."""
    from concurrent import futures

    big = b"x" * (5 << 20)
    handler = grpc.method_handlers_generic_handler(
        "test.Big", {"Get": grpc.unary_unary_rpc_method_handler(lambda request, context: big)}
    )
    executor = futures.ThreadPoolExecutor(2, thread_name_prefix="big-server")
    server = grpc.server(executor)
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    unlimited = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
    try:
        with grpc_pool.insecure_channel(f"127.0.0.1:{port}", size=1) as default:
            with pytest.raises(grpc.RpcError) as caught:
                default.unary_unary("/test.Big/Get")(b"", timeout=10)
            assert caught.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        with grpc_pool.insecure_channel(f"127.0.0.1:{port}", unlimited, size=1) as gapic_like:
            assert len(gapic_like.unary_unary("/test.Big/Get")(b"", timeout=10)) == len(big)
    finally:
        server.stop(None).wait(10)
        executor.shutdown(wait=True)


def test_a_call_on_a_retired_channel_held_by_the_caller_goes_to_a_ready_one(
    make_pool: Any, server: EchoServer
) -> None:
    """A caller that kept a channel from get_channel() past its retirement: its
    blocking unary call, refused by the gate before anything was sent, is sent on a
    ready channel instead (transparent retry, on by default) and counted."""
    pool = make_pool(server.target, size=2, retire_grace=0.0)
    pool.wait_ready(timeout=10, min_ready=2)
    held = list(pool._snapshot)
    echo = {c: c.unary_unary(ECHO) for c in held}
    pool.scale_down(1)
    retired = next(c for c in held if c not in pool._snapshot)
    wait_until(lambda: retired.closed, 10, "the retired channel to close")
    assert echo[retired](b"x", timeout=5) == b"x"
    response, call = echo[retired].with_call(b"y", timeout=5)
    assert response == b"y" and call.code() is grpc.StatusCode.OK
    assert pool.stats().retries == 2
