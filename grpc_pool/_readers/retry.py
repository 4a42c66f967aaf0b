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
from .._channel.pooled import PooledChannel
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
]

# At most this many transparent re-sends per RPC (and never more than the other
# ready channels): a pool whose every channel just lost its backend fails fast.
MAX_TRANSPARENT = 3

# Requests of a client-streaming RPC kept for sending it again (a failed pick
# comes within milliseconds: grpcio has pulled one or two by then).
REPLAY_LIMIT = 32

# A failed PICK on a channel in TRANSIENT_FAILURE (no wait_for_ready) carries these
# details (pick_first, round_robin: "...; last error: <the subchannel's>"); gRPC
# core never retries it. Measured with
# grpcio 1.60.0 and 1.85.1 (server-side records of every request id): 0 of
# 10,211 such failures reached a server. Prefixes only: the rest ("; last error:
# ...") differs by version. Everything else UNAVAILABLE ("Socket closed",
# "Connection reset", "Broken pipe", "Cancelling all calls", "max connection
# age", "enter idle") may have reached one: never retried transparently.
_NEVER_REACHED = (
    "failed to connect to all addresses; last error:",
    "connections to all backends failing; last error:",
)
_UNAVAILABLE = grpc.StatusCode.UNAVAILABLE


def never_reached(error: BaseException) -> bool:
    """Whether ``error`` proves its RPC reached no server: the pool's own
    ``ChannelRetired`` (refused before sending) or a failed pick."""
    if isinstance(error, ChannelRetired):
        return True
    if not isinstance(error, grpc.Call):
        return False
    try:
        if error.code() is not _UNAVAILABLE:
            return False
        details = error.details() or ""
    except Exception:
        return False
    return details.startswith(_NEVER_REACHED)


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
