"""Transparent retry across pooled channels: an RPC that failed on one pooled
channel before it reached any server is sent again on another ready one.

Only outcomes that prove "never reached a server" qualify (``never_reached``);
never after a response header or message arrived, never once a request of a
client-streaming call was pulled, never for an outcome that leaves doubt.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc

from .._base.errors import ChannelRetired
from .._channel.calls import Resend
from .._channel.outcomes import never_reached
from .._channel.pooled import MethodKey, PooledChannel, Reroute
from .._config.retry import RetryPolicy, pushback
from .reader import Reader

__all__ = [
    "MAX_TRANSPARENT",
    "REPLAY_LIMIT",
    "Attempts",
    "Requests",
    "another",
    "lost",
    "never_reached",
    "read_count",
    "remaining",
    "rerouter",
]

# At most this many transparent re-sends per RPC (and never more than the other
# ready channels): a pool whose every channel just lost its backend fails fast.
MAX_TRANSPARENT = 3

# Requests of a client-streaming RPC kept for sending it again (a failed pick
# comes within milliseconds: grpcio has pulled one or two by then).
REPLAY_LIMIT = 32


def remaining(deadline: float | None) -> float | None:
    """The timeout left before ``deadline`` (monotonic), None for none."""
    return None if deadline is None else deadline - time.monotonic()


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


_CALL_ARGS = ("timeout", "metadata", "credentials", "wait_for_ready", "compression")


def rerouter(reader: Reader) -> Reroute:
    """The transparent retry of the channels ``get_channel()``/``stub()`` hand out:
    a blocking unary call that failed before reaching any server is sent again on
    another ready channel, at most MAX_TRANSPARENT times, within its own timeout."""

    def reroute(channel: PooledChannel, key: MethodKey) -> Resend:
        def resend(
            how: str | None, request: Any, args: Any, kwargs: Any, error: Any, started: float
        ) -> Any:
            call = {**dict(zip(_CALL_ARGS, args, strict=False)), **kwargs}
            timeout = call.get("timeout")
            deadline = None if timeout is None else started + timeout
            tried = [channel]
            if not isinstance(error, ChannelRetired):
                lost(channel)
            for _ in range(MAX_TRANSPARENT):
                left = remaining(deadline)
                other = another(reader, tried)
                if other is None or (left is not None and left <= 0):
                    break
                tried.append(other)
                next(reader.retries)
                if left is not None:
                    call["timeout"] = left
                try:
                    once = other._callable(key).once
                    return (once if how is None else once.with_call)(request, **call)
                except grpc.RpcError as again:
                    if not never_reached(again):
                        raise
                    error = again
                    if not isinstance(again, ChannelRetired):
                        lost(other)
            raise error

        return resend

    return reroute


def read_count(counter: itertools.count[int]) -> int:
    """The next value ``counter`` would give, without taking it (``count(N)``)."""
    return int(repr(counter)[6:-1])


class Requests:
    """A client-streaming RPC's request iterator, replayable: the first
    ``REPLAY_LIMIT`` requests pulled are kept, so an attempt that never reached a
    server is sent again with every request it took (the caller's iterator is
    never iterated twice). Past the limit nothing is sent again. Thread-safe: a
    failed attempt's grpcio thread may still be pulling when the next starts."""

    __slots__ = ("_inner", "_kept", "_lock", "pulled")

    def __init__(self, inner: Any) -> None:
        self._inner = iter(inner)
        self._kept: list[Any] = []
        self._lock = threading.Lock()
        self.pulled = 0

    @property
    def replayable(self) -> bool:
        return self.pulled <= REPLAY_LIMIT

    def view(self) -> Iterator[Any]:
        """The requests from the first on: the kept ones, then new ones."""
        index = 0
        while True:
            with self._lock:  # one puller at a time: a generator is not re-entrant
                if index < len(self._kept):
                    item = self._kept[index]
                elif index < self.pulled:  # taken by another attempt, past the limit
                    return
                else:
                    try:
                        item = next(self._inner)
                    except StopIteration:
                        return
                    self.pulled += 1
                    if self.pulled <= REPLAY_LIMIT:
                        self._kept.append(item)
            index += 1
            yield item


class Attempts:
    """One RPC's attempts: the channels tried, its deadline, and how to send it
    again (``send(channel, timeout)``)."""

    __slots__ = (
        "_count",
        "_policy",
        "_policy_count",
        "_policy_tries",
        "_reader",
        "_send",
        "_transparent",
        "_transparent_tries",
        "deadline",
        "pulls",
        "tried",
    )

    def __init__(
        self,
        reader: Reader,
        count: itertools.count[int],
        send: Callable[[PooledChannel, float | None], Any],
        channel: PooledChannel,
        deadline: float | None,
        pulls: Requests | None,
        transparent: bool = True,
        policy: RetryPolicy | None = None,
        policy_count: itertools.count[int] | None = None,
    ) -> None:
        self._reader = reader
        self._count = count
        self._transparent = transparent
        self._transparent_tries = 0
        self._policy = policy
        self._policy_count = policy_count
        self._policy_tries = 0
        self._send = send
        self.tried = [channel]
        self.deadline = deadline
        self.pulls = pulls

    def next_channel(self, error: BaseException) -> PooledChannel | None:
        """Where to send again after ``error`` on the last channel tried; None: do not."""
        reached = not never_reached(error)
        if not reached and not isinstance(error, ChannelRetired):
            lost(self.tried[-1])
        if self.pulls is not None and not self.pulls.replayable:
            return None
        timeout = remaining(self.deadline)
        if timeout is not None and timeout <= 0:
            return None
        if not reached and self._transparent and self._transparent_tries < MAX_TRANSPARENT:
            channel = another(self._reader, self.tried)
            if channel is not None:
                self.tried.append(channel)
                self._transparent_tries += 1
                next(self._count)
                return channel
        return self._by_policy(error)

    def _by_policy(self, error: BaseException) -> PooledChannel | None:
        """PoolConfig.retry's next attempt after ``error`` (after its backoff or the
        server's pushback, slept here), on another ready channel when there is one."""
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
        self._policy_tries += 1
        delay = back if back is not None else policy.delay(self._policy_tries)
        left = remaining(self.deadline)
        if left is not None and left <= delay:  # never sleep past the deadline
            return None
        if delay > 0:
            time.sleep(delay)
        channel = another(self._reader, self.tried[-1:])
        if channel is None:  # none other ready: any ready one (the same, if it is back)
            pick = self._reader.state.pick
            channel = pick() if pick is not None else None
        if channel is not None:
            self.tried.append(channel)
            if self._policy_count is not None:
                next(self._policy_count)
        return channel

    def send(self, channel: PooledChannel) -> Any:
        return self._send(channel, remaining(self.deadline))

    def blocking(self, error: BaseException) -> Any:
        """A blocking call's retries after ``error``: the first outcome that does
        not qualify is the caller's (the last error raised as is)."""
        while True:
            channel = self.next_channel(error)
            if channel is None:
                raise error
            try:
                return self.send(channel)
            except grpc.RpcError as again:
                error = again
