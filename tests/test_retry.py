"""Transparent retry across pooled channels (PoolConfig.transparent_retry): an RPC
that failed on a pooled channel before reaching any server is sent again on
another ready channel; nothing that may have reached a server is sent again."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest

import grpc_pool
from grpc_pool import ChannelRetired
from grpc_pool._readers.retry import REPLAY_LIMIT, never_reached
from grpc_pool._writer import layout
from grpc_pool.testing import CHAT, COLLECT, ECHO, ECHO_STREAM, EchoServer

from .conftest import FAST

BURST = 200  # RPCs fired right after a backend stops
ROUNDS = 5  # stop/start cycles tried until one shows a never-reached failure


@pytest.fixture(autouse=True)
def _reconnecting_stays(monkeypatch: pytest.MonkeyPatch) -> None:
    """The old rotation rule (a reconnecting channel stays in rotation): a stopped
    backend's channels then take RPCs until their reconnect fails, which is what
    these tests need to see retried (tests/test_rotation.py covers the new rule)."""
    monkeypatch.setattr(layout, "LEAVE_WHILE_RECONNECTING", False)


def _pool(a: EchoServer, b: EchoServer, **overrides: Any) -> grpc_pool.Pool:
    config = {**FAST, "size": 4, **overrides}
    pool = grpc_pool.Pool(f"ipv4:127.0.0.1:{a.port},127.0.0.1:{b.port}", **config)
    # every slot, both backends': with one ready (b's still connecting) a burst after
    # a's stop has nowhere to go, and fails (seen once on the 3.10 floor)
    pool.wait_ready(timeout=10, min_ready=config["size"])
    return pool


def _burst(pool: grpc_pool.Pool, kind: str) -> list[BaseException]:
    """BURST RPCs of ``kind`` at once; the errors they ended with. ``kind`` is
    "<how>" through pool.channel, or "get_channel:<how>" on a channel
    ``pool.get_channel()`` hands out for each RPC (as ``pool.stub()`` does)."""
    api, _, how = kind.rpartition(":")

    def channel() -> grpc.Channel:
        return pool.get_channel() if api == "get_channel" else pool.channel

    errors: list[BaseException] = []
    if how == "future":
        calls = [channel().unary_unary(ECHO).future(b"x", timeout=5) for _ in range(BURST)]
        for call in calls:
            try:
                assert call.result(timeout=10) == b"x"
            except grpc.RpcError as error:
                errors.append(error)
        return errors

    def one(_: int) -> None:
        if how == "call":
            assert channel().unary_unary(ECHO)(b"x", timeout=5) == b"x"
        elif how == "with_call":
            response, call = channel().unary_unary(ECHO).with_call(b"x", timeout=5)
            assert response == b"x" and call.code() is grpc.StatusCode.OK
        elif how == "unary_stream":
            assert list(channel().unary_stream(ECHO_STREAM)(b"2", timeout=5)) == [b"2", b"2"]
        elif how == "stream_stream":
            assert list(channel().stream_stream(CHAT)(iter([b"a", b"b"]), timeout=5)) == [
                b"a",
                b"b",
            ]
        elif how == "stream_unary":
            assert channel().stream_unary(COLLECT)(iter([b"a", b"b"]), timeout=5) == b"ab"
        elif how == "stream_unary_future":
            future = channel().stream_unary(COLLECT).future(iter([b"a", b"b"]), timeout=5)
            assert future.result(timeout=10) == b"ab"

    with futures.ThreadPoolExecutor(8) as executor:
        for future in [executor.submit(one, i) for i in range(BURST)]:
            try:
                future.result(timeout=30)
            except grpc.RpcError as error:
                errors.append(error)
    return errors


def _stop_and_burst(
    pool: grpc_pool.Pool, a: EchoServer, kind: str, *, until_never_reached: bool = False
) -> list[BaseException]:
    """Cycles of: all slots ready, backend ``a`` stopped, a burst; until one cycle
    met a never-reached failure (a retry, or with retry off an error; with
    ``until_never_reached``, an error that proves it); that cycle's errors."""
    errors: list[BaseException] = []
    before = pool.stats().retries
    for _ in range(ROUNDS):
        a.stop(None)
        errors = _burst(pool, kind)
        met = any(never_reached(e) for e in errors) if until_never_reached else bool(errors)
        if met or pool.stats().retries > before:
            return errors
        a.start()
        pool.wait_ready(timeout=10)
        _wait_full(pool)
    return errors


def _wait_full(pool: grpc_pool.Pool) -> None:
    from .conftest import wait_until

    wait_until(lambda: pool.status().current_size == pool.status().expected_size, 10)


# An RPC written onto the stopped backend's connection as it went away: it may
# have reached the server, so it is never sent again. grpcio 1.60 reports the write
# that lost the connection as UNAVAILABLE "Broken pipe" (seen once in CI, on the
# floor run); the others name the socket closed or reset under the call.
CONNECTION_LOST = ("Broken pipe", "Socket closed", "Connection reset")


def _connection_lost(error: BaseException) -> bool:
    return (
        isinstance(error, grpc.Call)
        and error.code() is grpc.StatusCode.UNAVAILABLE
        and any(mark in (error.details() or "") for mark in CONNECTION_LOST)
    )


# Every kind: client-streaming calls are sent again with the requests they took
# (grpcio pulls the first one as soon as the call starts).
HOWS = ["call", "with_call", "future", "unary_stream", "stream_unary", "stream_stream"]
HOWS += ["stream_unary_future"]
# Through pool.channel and on the channels get_channel()/stub() hand out alike.
KINDS = HOWS + [f"get_channel:{how}" for how in HOWS]


@pytest.mark.parametrize("kind", KINDS)
def test_stopped_backend_loses_no_rpc(kind: str) -> None:
    """After one of two backends stops, RPCs of every kind, through pool.channel
    and on channels from get_channel(), that picked its channels are sent again
    on the other: none fails but an RPC whose connection the abrupt stop broke
    mid-write (it may have reached the server: never sent again, by raw grpcio
    either; seen once in 888 on grpcio 1.85), and stats() counts the retries."""
    with EchoServer() as a, EchoServer() as b, _pool(a, b) as pool:
        errors = _stop_and_burst(pool, a, kind)
        unexpected = [e for e in errors if not _connection_lost(e)]
        assert [f"{e.code()}: {e.details()}" for e in unexpected] == []  # type: ignore[attr-defined]
        assert pool.stats().retries > 0


def test_without_transparent_retry_the_stopped_backend_fails_rpcs() -> None:
    """The control: with transparent_retry=False the same stop fails RPCs with
    "failed to connect" (so the test above can fail), and nothing is sent again.
    Besides those, the only failures allowed are RPCs that lost their connection
    mid-write (UNAVAILABLE "Broken pipe", "Socket closed", "Connection reset"): they
    may have reached the server, which no transparent retry would send again."""
    with EchoServer() as a, EchoServer() as b, _pool(a, b, transparent_retry=False) as pool:
        errors = _stop_and_burst(pool, a, "call", until_never_reached=True)
        assert any(never_reached(e) for e in errors), errors
        others = [e for e in errors if not never_reached(e)]
        unexpected = [e for e in others if not _connection_lost(e)]
        assert unexpected == [], [f"{e.code()}: {e.details()}" for e in unexpected]  # type: ignore[attr-defined]
        assert pool.stats().retries == 0


def test_stopped_backend_leaves_rotation() -> None:
    """Once an RPC failed to connect on a channel, that channel leaves the rotation
    at once: after the burst, no channel to the stopped backend is in rotation and
    RPCs are picked only onto the other backend's channels."""
    with EchoServer() as a, EchoServer() as b, _pool(a, b) as pool:
        _stop_and_burst(pool, a, "call")
        from .conftest import wait_until

        dead = f"127.0.0.1:{a.port}"
        wait_until(lambda: all(c.target != dead for c in pool._snapshot), 10)
        peers_before = len(b.peers)
        for _ in range(50):
            assert pool.channel.unary_unary(ECHO)(b"x", timeout=5) == b"x"
        assert all(c.target != dead for c in pool._snapshot)
        assert len(b.peers) >= peers_before


# What a server could send to look like a failed pick: the pool cannot tell it from
# one (grpcio reports both alike), so it stands in for one in these tests.
FAKE_PICK_FAILURE = "failed to connect to all addresses; last error: (fake, from a server)"


class _Counting(grpc.GenericRpcHandler):
    """A backend that fails ``fail`` calls with UNAVAILABLE (details chosen) then echoes."""

    def __init__(self, details: str, fail: int) -> None:
        self.calls = itertools.count(1)
        self.details = details
        self.fail = fail
        self.pulled = 0

    def service(self, details: grpc.HandlerCallDetails) -> Any:
        def unary(request: bytes, context: grpc.ServicerContext) -> bytes:
            if next(self.calls) <= self.fail:
                context.abort(grpc.StatusCode.UNAVAILABLE, self.details)
            return request

        def collect(requests: Iterator[bytes], context: grpc.ServicerContext) -> bytes:
            data = b"".join(requests)  # every request pulled by the client first
            if next(self.calls) <= self.fail:
                context.abort(grpc.StatusCode.UNAVAILABLE, self.details)
            return data

        def stream(request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
            yield request
            if next(self.calls) <= self.fail:
                context.abort(grpc.StatusCode.UNAVAILABLE, self.details)
            yield request

        return {
            "/t.T/Unary": grpc.unary_unary_rpc_method_handler(unary),
            "/t.T/Collect": grpc.stream_unary_rpc_method_handler(collect),
            "/t.T/Stream": grpc.unary_stream_rpc_method_handler(stream),
        }.get(details.method)


class _Server:
    """A grpc server on loopback with ``handler``; stopped (and its threads ended) on exit."""

    def __init__(self, handler: grpc.GenericRpcHandler) -> None:
        self._executor = futures.ThreadPoolExecutor(4)
        self._server = grpc.server(self._executor)
        self._server.add_generic_rpc_handlers((handler,))
        self.port = self._server.add_insecure_port("127.0.0.1:0")

    def __enter__(self) -> _Server:
        self._server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.stop(None).wait(5)
        self._executor.shutdown(wait=True)


@pytest.mark.parametrize("details", CONNECTION_LOST)
def test_a_server_answer_is_never_sent_again(details: str) -> None:
    """An UNAVAILABLE a server sent with any details but a failed pick's (here the
    connection-lost ones the control test above allows) is the caller's: not
    retried, the server saw one call."""
    handler = _Counting(details, fail=1)
    with (
        _Server(handler) as server,
        grpc_pool.Pool(f"127.0.0.1:{server.port}", size=2, **FAST) as pool,
    ):
        pool.wait_ready(timeout=10)
        with pytest.raises(grpc.RpcError) as caught:
            pool.channel.unary_unary("/t.T/Unary")(b"x", timeout=5)
        assert caught.value.code() is grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
        assert _connection_lost(caught.value) and not never_reached(caught.value)
        assert next(handler.calls) == 2  # one call reached it
        assert pool.stats().retries == 0


def test_response_received_is_not_retried() -> None:
    """A stream that failed after a response arrived is not sent again, even with
    never-reached details: the caller gets the first response, then the error."""
    handler = _Counting(FAKE_PICK_FAILURE, fail=1)
    with (
        _Server(handler) as server,
        grpc_pool.Pool(f"127.0.0.1:{server.port}", size=2, **FAST) as pool,
    ):
        pool.wait_ready(timeout=10)
        stream = pool.channel.unary_stream("/t.T/Stream")(b"x", timeout=5)
        assert next(stream) == b"x"
        with pytest.raises(grpc.RpcError):
            next(stream)
        assert pool.stats().retries == 0


def test_client_stream_is_sent_again_with_every_request_it_took() -> None:
    """A client-streaming RPC that failed never-reached after grpcio pulled its
    requests is sent again with all of them (kept by the pool, up to
    REPLAY_LIMIT): the second attempt gets every request; the caller's iterator
    is iterated once. (The server here fakes a failed pick's details.)"""
    handler = _Counting(FAKE_PICK_FAILURE, fail=1)
    pulled: list[bytes] = []

    def requests() -> Iterator[bytes]:
        for item in (b"a", b"b", b"c"):
            pulled.append(item)
            yield item

    with (
        _Server(handler) as server,
        grpc_pool.Pool(f"127.0.0.1:{server.port}", size=2, **FAST) as pool,
    ):
        pool.wait_ready(timeout=10, min_ready=2)
        assert pool.channel.stream_unary("/t.T/Collect")(requests(), timeout=5) == b"abc"
        assert next(handler.calls) == 3  # two attempts reached the fake
        assert pulled == [b"a", b"b", b"c"]
        assert pool.stats().retries == 1


def test_client_stream_past_the_replay_limit_is_not_sent_again() -> None:
    """Once more requests were pulled than the pool keeps, a failure is the caller's,
    whatever its details: the server saw one call."""
    handler = _Counting(FAKE_PICK_FAILURE, fail=1)
    many = [b"x"] * (REPLAY_LIMIT + 5)
    with (
        _Server(handler) as server,
        grpc_pool.Pool(f"127.0.0.1:{server.port}", size=2, **FAST) as pool,
    ):
        pool.wait_ready(timeout=10, min_ready=2)
        with pytest.raises(grpc.RpcError):
            pool.channel.stream_unary("/t.T/Collect")(iter(many), timeout=5)
        assert next(handler.calls) == 2  # one call reached it
        assert pool.stats().retries == 0


def test_never_reached_outcomes() -> None:
    """Only a failed pick or the pool's own refusal count as never reached."""
    assert never_reached(ChannelRetired("closed"))
    assert not never_reached(ValueError("x"))
    assert not never_reached(grpc_pool.NoChannelAvailable("none"))


@pytest.mark.parametrize("kind", ["call", "with_call", "unary_stream", "get_channel:call"])
def test_a_hedged_method_loses_no_rpc_either(kind: str) -> None:
    """A hedged method (HedgingPolicy, a delay far beyond these RPCs) runs on the
    same retry path: after a backend stops, its RPCs that never reached a server
    are sent again on another channel at once, outside the hedging budget (0 here):
    none fails, and no hedge is counted."""
    policy = grpc_pool.HedgingPolicy(methods=(ECHO, ECHO_STREAM), delay=30.0, budget=0.0, burst=1)
    with EchoServer() as a, EchoServer() as b, _pool(a, b, hedging=policy) as pool:
        errors = _stop_and_burst(pool, a, kind)
        assert [f"{e.code()}: {e.details()}" for e in errors] == []  # type: ignore[attr-defined]
        stats = pool.stats()
        assert stats.retries > 0
        assert stats.hedges == 0
