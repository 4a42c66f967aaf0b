"""``ChannelSignals``: what one channel's RPC counting saw, as a read-only snapshot
(``PooledChannel.signals``) for custom strategies."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ChannelSignals"]


@dataclass(frozen=True, slots=True)
class ChannelSignals:
    """What one channel's counting saw, read without a lock (``PooledChannel.signals``).

    in_flight: RPCs started and not ended, streams included. latency: the peak-EWMA
    round trip of unary calls in seconds (a slower reply replaces it at once,
    faster ones weigh in with a 1 s time constant; failures only raise it; 0.0
    before the first reply; a stream's duration is no round trip, never a sample).
    since_sample: seconds since the last reply counted. pending_age: mean age of
    the unary calls in flight, seconds (0.0 with none). cost: what ``peak_ewma``
    compares, max(latency, pending_age) x (unary calls in flight + 1); 0.0 with no
    unary call in flight and no reply for 10 s (a probe: the next reply weighs
    1 - exp(-since_sample / 1 s)).
    answered, failed, failing: replies the server gave (the caller's own errors
    included), server-side failures, and failures in a row now (outlier ejection's).
    """

    in_flight: int
    latency: float
    since_sample: float
    pending_age: float
    cost: float
    answered: int
    failed: int
    failing: int
