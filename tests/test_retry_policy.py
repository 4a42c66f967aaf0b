"""The opt-in retry policy across pooled channels (PoolConfig.retry, RetryPolicy):
idempotent methods listed are retried on the codes listed, with backoff or the
server's pushback, within the caller's deadline, never after a response."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

import grpc_pool
from grpc_pool import InvalidConfig, RetryPolicy

from .conftest import FAST
from .test_retry import _Server

GET, PUT, STREAM = "/t.T/Get", "/t.T/Put", "/t.T/Stream"
FAST_POLICY = dict(initial_backoff=0.001, max_backoff=0.002)


class _Flaky(grpc.GenericRpcHandler):
    """Fails the first ``fail`` calls UNAVAILABLE "boom" (with ``pushback`` in the
    trailing metadata when given), then answers; counts every call it saw."""

    def __init__(self, fail: int, pushback: str | None = None) -> None:
        self.seen = itertools.count(1)
        self.fail = fail
        self.pushback = pushback

    def calls(self) -> int:
        return int(repr(self.seen)[6:-1]) - 1

    def _maybe_fail(self, context: grpc.ServicerContext) -> None:
        if next(self.seen) <= self.fail:
            if self.pushback is not None:
                context.set_trailing_metadata((("grpc-retry-pushback-ms", self.pushback),))
            context.abort(grpc.StatusCode.UNAVAILABLE, "boom")

    def service(self, details: grpc.HandlerCallDetails) -> Any:
        def unary(request: bytes, context: grpc.ServicerContext) -> bytes:
            self._maybe_fail(context)
            return request

        def stream(request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
            if request == b"late":
                yield request
            self._maybe_fail(context)
            yield request

        handlers = {
            GET: grpc.unary_unary_rpc_method_handler(unary),
            PUT: grpc.unary_unary_rpc_method_handler(unary),
            STREAM: grpc.unary_stream_rpc_method_handler(stream),
        }
        return handlers.get(details.method)


def _pool(server: _Server, policy: RetryPolicy) -> grpc_pool.Pool:
    pool = grpc_pool.Pool(f"127.0.0.1:{server.port}", size=2, retry=policy, **FAST)
    pool.wait_ready(timeout=10)
    return pool


def test_listed_method_succeeds_on_the_last_attempt() -> None:
    """A listed method failing UNAVAILABLE twice succeeds on attempt 3 of 3; the
    server saw 3 calls and stats() counts 2 policy retries."""
    handler = _Flaky(fail=2)
    policy = RetryPolicy(max_attempts=3, methods=(GET,), **FAST_POLICY)
    with _Server(handler) as server, _pool(server, policy) as pool:
        assert pool.channel.unary_unary(GET)(b"x", timeout=5) == b"x"
        assert handler.calls() == 3
        assert pool.stats().policy_retries == 2


def _on(pool: grpc_pool.Pool, api: str) -> grpc.Channel:
    if api == "stub":  # a stub as pool.stub() builds it: on a picked channel
        return pool.stub(lambda channel: channel)
    return pool.get_channel() if api == "get_channel" else pool.channel


@pytest.mark.parametrize("api", ["channel", "get_channel", "stub"])
@pytest.mark.parametrize("how", ["call", "with_call", "future", "stream"])
def test_every_api_and_kind_follows_the_policy(api: str, how: str) -> None:
    """The one retry serves every API alike: a listed method failing UNAVAILABLE
    once succeeds on its second attempt through pool.channel, a channel from
    get_channel() and a pool.stub(), blocking, with_call, future (its backoff
    waited off grpcio's thread) and server streaming; the server saw 2 calls."""
    handler = _Flaky(fail=1)
    policy = RetryPolicy(max_attempts=3, methods=("/t.T/",), **FAST_POLICY)
    with _Server(handler) as server, _pool(server, policy) as pool:
        channel = _on(pool, api)
        if how == "call":
            assert channel.unary_unary(GET)(b"x", timeout=5) == b"x"
        elif how == "with_call":
            response, call = channel.unary_unary(GET).with_call(b"x", timeout=5)
            assert response == b"x" and call.code() is grpc.StatusCode.OK
        elif how == "future":
            assert channel.unary_unary(GET).future(b"x", timeout=5).result(timeout=5) == b"x"
        else:
            assert list(channel.unary_stream(STREAM)(b"early", timeout=5)) == [b"early"]
        assert handler.calls() == 2
        assert pool.stats().policy_retries == 1


def test_attempts_are_bounded() -> None:
    """max_attempts bounds the attempts: failing 5 times with 3 attempts fails."""
    handler = _Flaky(fail=5)
    policy = RetryPolicy(max_attempts=3, **FAST_POLICY)
    with _Server(handler) as server, _pool(server, policy) as pool:
        with pytest.raises(grpc.RpcError) as caught:
            pool.channel.unary_unary(GET).with_call(b"x", timeout=5)
        assert caught.value.code() is grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
        assert handler.calls() == 3


def test_unlisted_method_fails_at_once() -> None:
    """A method not in ``methods`` (a prefix lists the service) is not retried."""
    handler = _Flaky(fail=1)
    policy = RetryPolicy(methods=("/t.T/G",), **FAST_POLICY)  # neither a name nor "/"-prefix
    with _Server(handler) as server, _pool(server, policy) as pool:
        with pytest.raises(grpc.RpcError):
            pool.channel.unary_unary(PUT)(b"x", timeout=5)
        assert handler.calls() == 1
        assert pool.stats().policy_retries == 0
    assert RetryPolicy(methods=("/t.T/",)).applies(PUT)
    assert not RetryPolicy(methods=("/t.T/G",)).applies(GET)


@pytest.mark.parametrize(("pushback", "calls"), [("-1", 1), ("abc", 1), ("5", 2)])
def test_server_pushback(pushback: str, calls: int) -> None:
    """grpc-retry-pushback-ms: a negative or malformed value stops the retries
    (gRFC A6); a valid one replaces the backoff and the retry goes ahead."""
    handler = _Flaky(fail=1, pushback=pushback)
    policy = RetryPolicy(max_attempts=3, **FAST_POLICY)
    with _Server(handler) as server, _pool(server, policy) as pool:
        if calls == 1:
            with pytest.raises(grpc.RpcError):
                pool.channel.unary_unary(GET)(b"x", timeout=5)
        else:
            assert pool.channel.unary_unary(GET)(b"x", timeout=5) == b"x"
        assert handler.calls() == calls


def test_deadline_bounds_the_attempts() -> None:
    """With backoffs longer than the RPC's timeout allows, no attempt is made past
    the deadline: fewer than max_attempts calls, and the caller gets the last
    error or DEADLINE_EXCEEDED."""
    handler = _Flaky(fail=100)
    policy = RetryPolicy(max_attempts=10, initial_backoff=0.2, max_backoff=0.2, jitter=0.0)
    with _Server(handler) as server, _pool(server, policy) as pool:
        with pytest.raises(grpc.RpcError) as caught:
            pool.channel.unary_unary(GET)(b"x", timeout=0.5)
        code = caught.value.code()  # type: ignore[attr-defined]
        assert code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
        assert handler.calls() < 10


def test_stream_retried_only_before_a_response() -> None:
    """A response stream failing before its first response is retried; one that
    failed after a response is the caller's."""
    policy = RetryPolicy(**FAST_POLICY)
    handler = _Flaky(fail=1)
    with _Server(handler) as server, _pool(server, policy) as pool:
        assert list(pool.channel.unary_stream(STREAM)(b"early", timeout=5)) == [b"early"]
        assert handler.calls() == 2
    handler = _Flaky(fail=1)
    with _Server(handler) as server, _pool(server, policy) as pool:
        stream = pool.channel.unary_stream(STREAM)(b"late", timeout=5)
        assert next(stream) == b"late"
        with pytest.raises(grpc.RpcError):
            next(stream)
        assert handler.calls() == 1


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_attempts", 1),
        ("max_attempts", 11),
        ("max_attempts", True),
        ("initial_backoff", 0),
        ("max_backoff", 0.01),
        ("backoff_multiplier", 0.5),
        ("jitter", 1.5),
        ("codes", ()),
        ("codes", (grpc.StatusCode.OK,)),
        ("codes", grpc.StatusCode.UNAVAILABLE),
        ("methods", "/t.T/Get"),
        ("methods", ("t.T/Get",)),
        ("methods", ()),
    ],
)
def test_bad_policy_values(field: str, value: object) -> None:
    """Each bad RetryPolicy value is an InvalidConfig naming the field."""
    with pytest.raises(InvalidConfig, match=f"^{field}="):
        RetryPolicy(**{field: value})  # type: ignore[arg-type]


def test_retry_must_be_a_policy() -> None:
    """PoolConfig.retry takes a RetryPolicy or None."""
    with pytest.raises(InvalidConfig, match=r"^retry="):
        grpc_pool.PoolConfig("127.0.0.1:1", insecure=True, retry={"max_attempts": 3})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("non_fatal", "pushback", "calls", "hedges"),
    [
        ((), None, 1, 0),  # a fatal code: the caller's at once
        ((grpc.StatusCode.UNAVAILABLE,), "-1", 1, 0),  # the server says: no more
        ((grpc.StatusCode.UNAVAILABLE,), "5", 2, 1),  # the next attempt after 5 ms
    ],
)
def test_hedging_after_a_failed_attempt(
    non_fatal: tuple[grpc.StatusCode, ...], pushback: str | None, calls: int, hedges: int
) -> None:
    """A hedged method's attempt failing UNAVAILABLE (long before the 30 s delay):
    a fatal code ends the RPC; a non-fatal one sends the next attempt, after the
    server's pushback, unless the pushback says stop (gRFC A6)."""
    handler = _Flaky(fail=1, pushback=pushback)
    policy = grpc_pool.HedgingPolicy(
        methods=(GET,), delay=30.0, budget=1.0, non_fatal_codes=non_fatal
    )
    with (
        _Server(handler) as server,
        grpc_pool.Pool(f"127.0.0.1:{server.port}", size=2, hedging=policy, **FAST) as pool,
    ):
        pool.wait_ready(timeout=10, min_ready=2)
        if calls == 1:
            with pytest.raises(grpc.RpcError) as caught:
                pool.channel.unary_unary(GET)(b"x", timeout=5)
            assert caught.value.code() is grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
        else:
            assert pool.channel.unary_unary(GET)(b"x", timeout=5) == b"x"
        assert handler.calls() == calls
        assert pool.stats().hedges == hedges
