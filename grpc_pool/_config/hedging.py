"""``HedgingPolicy``: opt-in hedged requests across pooled channels for idempotent
methods (``PoolConfig.hedging``), modelled on gRFC A6's ``hedgingPolicy``, which
grpc core ignores."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import grpc

from .retry import check_methods, lists
from .validate import _check_number, _invalid, check_seconds

__all__ = ["HedgingPolicy"]


@dataclass(frozen=True)
class HedgingPolicy:
    """Hedge the unary and server-streaming RPCs of the ``methods`` listed: when
    no answer came within a delay, a copy goes to **another** ready pooled
    channel; the first answer wins (for a stream: the first response message)
    and the other attempts are cancelled.

    Only idempotent methods belong in ``methods``: every attempt may run.

    methods: full method names ("/pkg.Service/Get") or service prefixes ending in
        "/" ("/pkg.Service/"), as ``RetryPolicy``'s; required.
    max_attempts: attempts in all, the first included (2..5, default 2).
    delay: seconds before each next attempt; None (default): adaptive, the
        ``percentile`` of the method's latency observed over its last
        ``window`` RPCs through the pool, at most 3 times their median (a slow
        backend taking a large share of the traffic must not set the delay to
        its own latency), never below ``min_delay``; no hedge until
        ``window // 4`` RPCs have been seen.
    percentile: the adaptive delay's quantile, 0.5..0.999 (default 0.96: a p95
        delay hedged 5.2% of RPCs on healthy backends, bench row 9e).
    min_delay: seconds, the adaptive delay's floor (default 0.002).
    window: RPCs whose latency the adaptive delay is taken from (16..10000,
        default 200).
    budget: hedges at most this fraction of the RPCs of the methods listed, plus a
        burst of ``burst`` (0.0..1.0, default 0.1; gRFC A6's throttling as model:
        every RPC adds ``budget`` tokens, every hedge takes one).
    burst: the most tokens kept (1..1000, default 100: what a backend that
        stalls all at once gets hedged at once, before the budget's rate rules).
    non_fatal_codes: status codes of a failed attempt after which the next one
        is sent at once rather than the failure returned (default none; an
        attempt that never reached a server is always non-fatal).
    The server's ``grpc-retry-pushback-ms`` on a failed attempt delays the next
    hedge by that much; a negative or malformed value stops hedging (gRFC A6).
    Never past the caller's deadline. ``future()`` is hedged too (its race waits on a
    thread of its own); client-streaming and bidi RPCs are not hedged.
    """

    methods: Sequence[str]
    max_attempts: int = 2
    delay: float | None = None
    percentile: float = 0.96
    min_delay: float = 0.002
    window: int = 200
    budget: float = 0.1
    burst: int = 100
    non_fatal_codes: Sequence[grpc.StatusCode] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "methods", check_methods(self.methods))
        attempts = self.max_attempts
        if isinstance(attempts, bool) or not isinstance(attempts, int) or not 2 <= attempts <= 5:
            raise _invalid("max_attempts", attempts, "an int 2..5")
        if self.delay is not None:
            check_seconds("delay", self.delay)
        _check_number("percentile", self.percentile, "0.5..0.999", lambda v: 0.5 <= v <= 0.999)
        check_seconds("min_delay", self.min_delay)
        window = self.window
        if isinstance(window, bool) or not isinstance(window, int) or not 16 <= window <= 10000:
            raise _invalid("window", window, "an int 16..10000")
        _check_number("budget", self.budget, "0.0..1.0", lambda v: 0 <= v <= 1)
        burst = self.burst
        if isinstance(burst, bool) or not isinstance(burst, int) or not 1 <= burst <= 1000:
            raise _invalid("burst", burst, "an int 1..1000")
        codes = self.non_fatal_codes
        if isinstance(codes, grpc.StatusCode) or not isinstance(codes, Sequence):
            raise _invalid("non_fatal_codes", codes, "a sequence of grpc.StatusCode")
        for code in codes:
            if not isinstance(code, grpc.StatusCode) or code is grpc.StatusCode.OK:
                raise _invalid("non_fatal_codes", codes, "grpc.StatusCode values other than OK")
        object.__setattr__(self, "non_fatal_codes", tuple(codes))

    def applies(self, method: str) -> bool:
        """Whether ``method`` (a full method name) is one this policy hedges."""
        return lists(self.methods, method)
