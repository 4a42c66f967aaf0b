"""Reconnect delays after the gRPC connection backoff spec (doc/connection-backoff.md)."""

from __future__ import annotations

import random


class Backoff:
    """Exponential backoff with jitter; one per worker, not thread-safe.

    ``next_delay()`` gives initial * multiplier**k, capped at ``maximum``,
    randomized by +/- ``jitter`` (a fraction), for the k-th failure in a row.
    """

    __slots__ = ("_current", "_initial", "_jitter", "_maximum", "_multiplier", "_rng")

    def __init__(
        self,
        initial: float,
        multiplier: float,
        jitter: float,
        maximum: float,
        rng: random.Random | None = None,
    ) -> None:
        self._initial = initial
        self._multiplier = multiplier
        self._jitter = jitter
        self._maximum = maximum
        self._current = initial
        self._rng = rng or random.Random()

    def next_delay(self) -> float:
        base = self._current
        self._current = min(self._current * self._multiplier, self._maximum)
        if self._jitter:
            base *= 1.0 + self._rng.uniform(-self._jitter, self._jitter)
        return max(0.0, base)

    def reset(self) -> None:
        self._current = self._initial
