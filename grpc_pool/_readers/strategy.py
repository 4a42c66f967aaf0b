"""Who picks a channel: the selection strategies run on the caller's thread."""

from __future__ import annotations

import itertools
import logging
import random
import time
from collections.abc import Callable, Sequence

from .._base.errors import StrategyError
from .._channel.pooled import PooledChannel
from .._config.validate import Strategy
from .._contract.events import GetChannelEvent

__all__ = [
    "PeakEwma",
    "PowerOfTwo",
    "Random",
    "RoundRobin",
    "Strategy",
    "reader_pick",
    "resolve_strategy",
]

logger = logging.getLogger(__name__)
_monotonic = time.monotonic


class RoundRobin:
    """Each call takes the next channel; ``next()`` on itertools.count is atomic under the GIL."""

    __slots__ = ("_counter",)

    def __init__(self) -> None:
        self._counter = itertools.count()

    def pick(self, channels: Sequence[PooledChannel]) -> PooledChannel:
        return channels[next(self._counter) % len(channels)]


class Random:
    """A uniformly random channel (C-level random(): no Python frames beyond pick)."""

    __slots__ = ("_random",)

    def __init__(self, rng: random.Random | None = None) -> None:
        self._random = (rng or random.Random()).random

    def pick(self, channels: Sequence[PooledChannel]) -> PooledChannel:
        return channels[int(self._random() * len(channels))]


class PowerOfTwo:
    """Two random channels; the one with fewer RPCs in flight wins. Uncounted
    channels (``track_in_flight=False``) have no load to compare: then each call
    takes the next channel in turn, which evens out the picks. A pick reads the
    channels and writes nothing on them (readers on other threads share them)."""

    __slots__ = ("_random", "_turns")

    def __init__(self, rng: random.Random | None = None) -> None:
        self._random = (rng or random.Random()).random
        self._turns = itertools.count()  # next() is atomic under the GIL

    def pick(self, channels: Sequence[PooledChannel]) -> PooledChannel:
        n = len(channels)
        if n == 1:
            return channels[0]
        i = int(self._random() * n)
        j = (i + 1 + int(self._random() * (n - 1))) % n
        a, b = channels[i], channels[j]
        ca, cb = a._counter, b._counter  # attribute reads, no property calls
        if ca is None or cb is None:
            return channels[next(self._turns) % n]
        return a if ca.in_flight <= cb.in_flight else b


class PeakEwma:
    """Two random channels, the cheaper wins (Finagle's PeakEwma, tower's
    peak_ewma): cost = the channel's peak-EWMA latency, or the mean age of its RPCs
    in flight when that is longer (a stalled backend loses before its first RPC
    returns), times (in flight + 1); an idle channel without a reply for
    ``PROBE_AFTER`` costs 0 (probed; a fast reply after long idle weighs heavily).
    The second draw avoids the first's target when it can (two slots on one slow
    backend would leave no choice). Uncounted channels: round robin, as
    ``PowerOfTwo``. Reads only; writes nothing shared."""

    __slots__ = ("_random", "_seen", "_turns")

    def __init__(self, rng: random.Random | None = None) -> None:
        self._random = (rng or random.Random()).random
        self._turns = itertools.count()
        # (the channels last given, whether they span several targets): one
        # attribute, swapped whole, so readers on other threads never see it torn.
        self._seen: tuple[object, bool] = ((), False)

    def pick(self, channels: Sequence[PooledChannel]) -> PooledChannel:
        n = len(channels)
        if n == 1:
            return channels[0]
        draw = self._random
        i = int(draw() * n)
        a = channels[i]
        b = channels[(i + 1 + int(draw() * (n - 1))) % n]
        seen = self._seen
        if seen[0] is not channels:  # a new published state
            seen = self._seen = (channels, len({c.target for c in channels}) > 1)
        if seen[1]:
            for _ in range(3):  # another backend, if a draw finds one
                if b.target != a.target:
                    break
                b = channels[(i + 1 + int(draw() * (n - 1))) % n]
        ca, cb = a._counter, b._counter
        if ca is None or cb is None:
            return channels[next(self._turns) % n]
        now = _monotonic()
        return a if ca.cost(now) <= cb.cost(now) else b


class _Guarded:
    """Wraps a user strategy: an exception or a foreign result becomes a ``StrategyError``
    naming the strategy (never a bare exception, never a channel it did not pick)."""

    __slots__ = ("_inner",)

    def __init__(self, inner: Strategy) -> None:
        self._inner = inner

    def pick(self, channels: Sequence[PooledChannel]) -> PooledChannel:
        try:
            chosen: PooledChannel = self._inner.pick(channels)
        except Exception as exc:
            raise StrategyError(
                f"strategy {self._inner!r} raised {type(exc).__name__} in pick() "
                f"over {len(channels)} ready channels"
            ) from exc
        for channel in channels:  # identity, not ==: one of the very objects given
            if channel is chosen:
                return chosen
        raise StrategyError(
            f"strategy {self._inner!r} returned an object of type {type(chosen).__name__}, "
            f"not one of the {len(channels)} ready channels it was given"
        )


def resolve_strategy(strategy: str | Strategy) -> Strategy:
    if strategy == "round_robin":
        return RoundRobin()
    if strategy == "random":
        return Random()
    if strategy == "power_of_two":
        return PowerOfTwo()
    if strategy == "peak_ewma":
        return PeakEwma()
    assert not isinstance(strategy, str)  # names were checked by PoolConfig
    return _Guarded(strategy)


def reader_pick(
    strategy: Strategy,
    sample_rate: int,
    emit: Callable[[GetChannelEvent], None] | None,
    pool_name: str,
) -> Callable[[Sequence[PooledChannel]], PooledChannel] | None:
    """What ``get_channel`` calls over the published channels; None for round robin
    while nothing samples (``bind_picker`` then cycles in C). With a listener and
    ``telemetry_sample_rate`` N, about one pick in N also emits a GetChannelEvent."""
    plain = strategy.pick
    if not sample_rate or emit is None:
        return None if isinstance(strategy, RoundRobin) else plain
    counter = itertools.count()

    def sampled(channels: Sequence[PooledChannel]) -> PooledChannel:
        channel: PooledChannel = plain(channels)
        if next(counter) % sample_rate == 0:
            emit(
                GetChannelEvent(
                    pool=pool_name,
                    at=time.monotonic(),
                    available=len(channels),
                    slot=channel.slot,
                )
            )
        return channel

    return sampled
