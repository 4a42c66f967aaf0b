"""The pool's one retry mechanism: every API (``pool.channel``, the channels
``get_channel()``/``stub()`` hand out, ``insecure_channel()``) and every kind
drives one ``Rpc`` per call, which knows its attempts, its deadline and what may
be sent again (grpc-java's ``RetriableStream``, grpc-go's ``clientStream``).

Sent again on another ready channel: transparently when the outcome proves the
RPC reached no server (``never_reached``, at most ``MAX_TRANSPARENT`` times), and
by ``PoolConfig.retry`` for the idempotent methods it lists; hedged by
``PoolConfig.hedging`` (``hedge.py``). Never after a response message, never for
a request iterator consumed beyond what is kept, never past the deadline.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

import grpc

from .._base.errors import ChannelRetired
from .._channel.calls import BoundRetry
from .._channel.gate import STREAM_STREAM, STREAM_UNARY, UNARY_STREAM, UNARY_UNARY
from .._channel.outcomes import never_reached
from .._channel.pooled import MethodKey, PooledChannel
from .._config.retry import RetryPolicy, pushback
from .hedge import Hedger
from .reader import Reader
from .retrycalls import REPLAY_LIMIT, Requests, RetryingFuture, RetryingStream

__all__ = [
    "MAX_TRANSPARENT",
    "REPLAY_LIMIT",
    "Requests",
    "Retrier",
    "Rpc",
    "another",
    "lost",
    "never_reached",
    "read_count",
    "remaining",
]

# At most this many transparent re-sends per RPC (and never more than the other
# ready channels): a pool whose every channel just lost its backend fails fast.
MAX_TRANSPARENT = 3

_CALL_ARGS = ("timeout", "metadata", "credentials", "wait_for_ready", "compression")
_monotonic = time.monotonic


def remaining(deadline: float | None) -> float | None:
    """The timeout left before ``deadline`` (monotonic), None for none."""
    return None if deadline is None else deadline - _monotonic()


def another(reader: Reader, tried: list[PooledChannel]) -> PooledChannel | None:
    """A ready channel not in ``tried`` (through the pool's picker when it finds
    one in a few picks, else the first other), None when there is none."""
    state = reader.state
    others = [c for c in state.channels if c not in tried]
    if not others:
        return None
    pick = state.pick
    if pick is not None:
        for _ in range(len(state.channels)):
            channel = pick()
            if channel not in tried:
                return channel
    return others[0]


def lost(channel: PooledChannel) -> None:
    """Tell ``channel``'s worker at once that its connection is gone (a failed pick)."""
    counter = channel._counter
    callback = counter.on_lost if counter is not None else None
    if callback is not None:
        callback()


def read_count(counter: itertools.count[int]) -> int:
    """The next value ``counter`` would give, without taking it (``count(N)``)."""
    return int(repr(counter)[6:-1])


class Retrier:
    """The pool's retry rules, built once per pool: which methods a policy covers,
    the counters ``stats()`` reads, and ``call``, the one entry every API takes."""

    __slots__ = (
        "_methods",
        "hedger",
        "policy",
        "policy_count",
        "reader",
        "transparent",
        "transparent_count",
    )

    def __init__(self, reader: Reader) -> None:
        self.reader = reader
        config = reader.config
        self.transparent = config.transparent_retry
        self.policy = config.retry
        hedging = config.hedging
        self.hedger = Hedger(reader, hedging) if hedging is not None else None
        self.transparent_count = reader.retries
        self.policy_count = reader.policy_retries
        self._methods: dict[str, RetryPolicy | None] = {}

    @property
    def active(self) -> bool:
        """Whether any RPC may be sent again (or hedged) at all."""
        return self.transparent or self.policy is not None or self.hedger is not None

    def hedges(self, key: MethodKey) -> bool:
        """Whether an RPC of ``key`` is hedged (unary and server-streaming kinds)."""
        hedger = self.hedger
        return (
            hedger is not None
            and (key[0] is UNARY_UNARY or key[0] is UNARY_STREAM)
            and hedger.covers(key[1])
        )

    def policy_for(self, method: str) -> RetryPolicy | None:
        """``PoolConfig.retry`` when it covers ``method``, else None."""
        policy = self.policy
        if policy is None:
            return None
        found = self._methods.get(method, policy)
        if found is policy:
            found = policy if policy.applies(method) else None
            if len(self._methods) < 1024:
                self._methods[method] = found
        return found

    def covers(self, key: MethodKey) -> bool:
        """Whether an RPC of ``key`` may be sent again or hedged."""
        return self.transparent or self.policy_for(key[1]) is not None or self.hedges(key)

    def bind(self, channel: PooledChannel, key: MethodKey) -> BoundRetry | None:
        """What a pooled channel's multi-callable of ``key`` calls (None: it never
        sends again, and runs with no retry frame at all)."""
        return _Bound(self, channel, key) if self.covers(key) else None

    def call(
        self, channel: PooledChannel, key: MethodKey, how: str | None, request: Any, call: Any
    ) -> Any:
        """The RPC on ``channel`` (``how``: None, "with_call" or "future"; ``call``:
        grpcio's keyword arguments), and, when it fails so that it may be sent
        again, its next attempts; what the caller gets: a result, or a future or
        a response iterator that sends again on its own."""
        kind = key[0]
        hedged = self.hedger is not None and self.hedges(key)
        if kind is UNARY_UNARY and how != "future" and not hedged:  # the hot path: inline
            started = _monotonic()
            once = channel._callable(key).once
            try:
                return (once if how is None else once.with_call)(request, **call)
            except grpc.RpcError as error:
                return self.failed(channel, key, how, request, call, error, started)
        timeout = call.get("timeout")
        deadline = None if timeout is None else _monotonic() + timeout
        pulls = None
        if kind is STREAM_UNARY or kind is STREAM_STREAM:
            pulls = Requests(request)
            request = None
        rpc = Rpc(self, key, how, request, pulls, call, channel, deadline)
        if hedged:
            assert self.hedger is not None
            return self.hedger.run(rpc, channel, key[1], kind is UNARY_STREAM)
        try:
            result = rpc.send(channel, timeout)
        except grpc.RpcError as error:
            return rpc.after(error)
        if how == "future" or kind is UNARY_STREAM or kind is STREAM_STREAM:
            return rpc.wrap(result)
        return result

    def failed(
        self,
        channel: PooledChannel,
        key: MethodKey,
        how: str | None,
        request: Any,
        call: Any,
        error: BaseException,
        started: float,
    ) -> Any:
        """A blocking unary-unary call whose first attempt (made inline, the hot
        path) failed with ``error``: its next attempts, or ``error`` raised."""
        timeout = call.get("timeout")
        deadline = None if timeout is None else started + timeout
        return Rpc(self, key, how, request, None, call, channel, deadline).blocking(error)


class _Bound:
    """``Retrier`` for one pooled channel's multi-callable (grpcio's positional
    arguments made keywords)."""

    __slots__ = ("_channel", "_key", "_retrier", "hedged")

    def __init__(self, retrier: Retrier, channel: PooledChannel, key: MethodKey) -> None:
        self._retrier = retrier
        self._channel = channel
        self._key = key
        self.hedged = retrier.hedges(key)

    def start(self, how: str | None, request: Any, args: Any, kwargs: Any) -> Any:
        call = {**dict(zip(_CALL_ARGS, args, strict=False)), **kwargs}
        return self._retrier.call(self._channel, self._key, how, request, call)

    def failed(
        self, how: str | None, request: Any, args: Any, kwargs: Any, error: Any, started: float
    ) -> Any:
        call = {**dict(zip(_CALL_ARGS, args, strict=False)), **kwargs}
        return self._retrier.failed(self._channel, self._key, how, request, call, error, started)


class Rpc:
    """One RPC: the channels tried, its deadline, what it sends (the request, or
    the replayable request iterator) and the rules for sending it again.

    ``plan(error)`` decides (the delay before the next attempt, or None: the
    error is the caller's), ``next_channel()`` picks where; ``blocking``, the
    future and the stream of ``retrycalls`` drive the two."""

    __slots__ = (
        "_call",
        "_key",
        "_next",
        "_policy",
        "_policy_tries",
        "_request",
        "_retrier",
        "_transparent_tries",
        "deadline",
        "how",
        "pulls",
        "tried",
    )

    def __init__(
        self,
        retrier: Retrier,
        key: MethodKey,
        how: str | None,
        request: Any,
        pulls: Requests | None,
        call: dict[str, Any],
        channel: PooledChannel,
        deadline: float | None,
    ) -> None:
        self._retrier = retrier
        self._key = key
        self.how = how
        self._request = request
        self._call = call
        self._policy = retrier.policy_for(key[1])
        self._policy_tries = 0
        self._transparent_tries = 0
        self._next: PooledChannel | None = None
        self.pulls = pulls
        self.tried = [channel]
        self.deadline = deadline

    def send(self, channel: PooledChannel, timeout: float | None) -> Any:
        """One attempt on ``channel`` (never sent again by the channel itself)."""
        once = channel._callable(self._key).once
        how = self.how
        fn = once if how is None else getattr(once, how)
        pulls = self.pulls
        request = self._request if pulls is None else pulls.view()  # every request again
        return fn(request, **{**self._call, "timeout": timeout})

    def remaining(self) -> float | None:
        return remaining(self.deadline)

    def send_hedge(self, channel: PooledChannel, timeout: float | None, stream: bool) -> Any:
        """One hedged attempt: a unary call's future, or a server stream."""
        once = channel._callable(self._key).once
        fn = once if stream else once.future
        return fn(self._request, **{**self._call, "timeout": timeout})

    def plan(self, error: BaseException) -> float | None:
        """Seconds to wait before the next attempt after ``error`` on the last
        channel tried (0: at once); None: do not send again."""
        reached = not never_reached(error)
        if not reached and not isinstance(error, ChannelRetired):
            lost(self.tried[-1])
        if self.pulls is not None and not self.pulls.replayable:
            return None
        left = remaining(self.deadline)
        if left is not None and left <= 0:
            return None
        retrier = self._retrier
        if not reached and retrier.transparent and self._transparent_tries < MAX_TRANSPARENT:
            channel = another(retrier.reader, self.tried)
            if channel is not None:
                self._next = channel
                return 0.0
        return self._policy_delay(error, left)

    def _policy_delay(self, error: BaseException, left: float | None) -> float | None:
        """PoolConfig.retry's delay before its next attempt (its backoff, or the
        server's pushback), None when the policy does not send again."""
        policy = self._policy
        if policy is None or self._policy_tries + 1 >= policy.max_attempts:
            return None
        if not isinstance(error, grpc.Call):
            return None
        try:
            code, trailing = error.code(), error.trailing_metadata()
        except Exception:
            return None
        if code not in policy.codes:
            return None
        back = pushback(trailing)
        if back is not None and back < 0:  # the server says: do not retry
            return None
        delay = back if back is not None else policy.delay(self._policy_tries + 1)
        if left is not None and left <= delay:  # never wait past the deadline
            return None
        self._policy_tries += 1
        return delay

    def next_channel(self) -> PooledChannel | None:
        """Where the attempt ``plan`` allowed goes: another ready channel (for a
        policy retry with none other ready, any ready one); None: nowhere."""
        reader = self._retrier.reader
        channel = self._next
        if channel is not None:  # transparent: chosen by plan
            self._next = None
            self._transparent_tries += 1
            next(self._retrier.transparent_count)
        else:
            channel = another(reader, self.tried[-1:])
            if channel is None:  # none other ready: the same one, if it is back
                pick = reader.state.pick
                channel = pick() if pick is not None else None
            if channel is not None:
                next(self._retrier.policy_count)
        if channel is not None:
            self.tried.append(channel)
        return channel

    def resend(self, error: BaseException) -> Any:
        """The next attempt's call after ``error`` (waiting out the delay), or None
        when it does not qualify (or no channel is ready, or the time is spent)."""
        while True:
            delay = self.plan(error)
            if delay is None:
                return None
            if delay > 0:
                time.sleep(delay)
            channel = self.next_channel()
            if channel is None:
                return None
            try:
                return self.send(channel, remaining(self.deadline))
            except grpc.RpcError as again:  # e.g. that channel closed meanwhile
                error = again

    def blocking(self, error: BaseException) -> Any:
        """A blocking call's next attempts after ``error``: its result, or the last
        error (as grpcio raised it) once no attempt follows."""
        while True:
            delay = self.plan(error)
            if delay is None:
                raise error
            if delay > 0:
                time.sleep(delay)
            channel = self.next_channel()
            if channel is None:
                raise error
            try:
                return self.send(channel, remaining(self.deadline))
            except grpc.RpcError as again:
                error = again

    def after(self, error: grpc.RpcError) -> Any:
        """The first attempt raised ``error`` at once (e.g. a retired channel)."""
        kind = self._key[0]
        if self.how != "future" and kind is not UNARY_STREAM and kind is not STREAM_STREAM:
            return self.blocking(error)
        again = self.resend(error)
        if again is None:
            raise error
        return self.wrap(again)

    def wrap(self, call: Any) -> Any:
        """The caller's object for a future or a response stream of this RPC."""
        if self.how == "future":
            if not hasattr(call, "add_callback"):  # an interceptor's object: as it is
                return call
            return RetryingFuture(self, call)
        return RetryingStream(self, call)
