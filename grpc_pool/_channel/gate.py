"""RPC accounting on a pooled channel: in flight, outcomes (for outlier ejection),
drain, ejection, and the gate that refuses RPCs once the pool has closed the channel."""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable
from math import exp
from typing import Any

import grpc

from .._base.errors import ChannelRetired, GrpcPoolError
from .._base.parking import HOLD_LIMIT
from .._config.outliers import FAILURE_CODES, NEUTRAL_CODES
from .outcomes import never_reached
from .signals import ChannelSignals

__all__ = [
    "FORK_HOLD",
    "PROBE_AFTER",
    "STREAM_STREAM",
    "STREAM_UNARY",
    "UNARY_STREAM",
    "UNARY_UNARY",
    "ForkHold",
    "Gate",
    "RpcCounter",
    "track",
]

UNARY_UNARY, UNARY_STREAM = "unary_unary", "unary_stream"
STREAM_UNARY, STREAM_STREAM = "stream_unary", "stream_stream"

_OK, _UNAVAILABLE = grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE
_CANCELLED, _DEADLINE = grpc.StatusCode.CANCELLED, grpc.StatusCode.DEADLINE_EXCEEDED
# Peak EWMA (Finagle's PeakEwma, tower's peak_ewma): a slower reply replaces the
# estimate at once; faster ones weigh in by 1 - exp(-elapsed / DECAY). Finagle's is
# 10 s; with 1 s a fast channel raised by one late reply (a client-side pause) stops
# losing picks to a truly slow backend within a second, not ten (bench row 9a).
DECAY = 1.0
# The way back for a backend that recovered: an idle channel without a reply for
# PROBE_AFTER costs 0, so the next pick that draws it probes it; after that long
# its reply all but replaces the estimate (a recovered backend's cost falls at once).
# (Decaying an idle channel's cost on every read sent 3x more RPCs to a 60 ms
# backend in the 9a bench: a fast channel's estimate after one slow reply lost to it.)
PROBE_AFTER = 10.0
_monotonic = time.monotonic


class ForkHold:
    """Around ``os.fork()``: RPCs started through the pool wait here, outside gRPC,
    so that those in flight can end and none starts while the process forks (a
    thread inside gRPC at fork time can crash the child)."""

    __slots__ = ("_condition", "active")

    def __init__(self) -> None:
        self.active = False
        self._condition = threading.Condition()

    def wait(self) -> None:
        with self._condition:
            self._condition.wait_for(lambda: not self.active, HOLD_LIMIT)

    def set(self, active: bool) -> None:
        with self._condition:
            self.active = active
            self._condition.notify_all()


# Replaced in a forked child (its lock may have been held by a parent thread).
FORK_HOLD = ForkHold()


class Gate:
    """Refuses RPCs and stub builds on a channel once the pool has closed it, with a
    pool error instead of grpcio's ValueError (or worse: grpcio 1.85 crashes when a
    registered method is built on a closed channel). Untracked channels use it as is."""

    __slots__ = ("_build_lock", "_error", "closed")
    counts = False

    def __init__(self) -> None:
        self.closed = False
        self._error: GrpcPoolError | None = None
        self._build_lock = threading.Lock()  # a build never overlaps the close

    def refused(self) -> GrpcPoolError:
        error = self._error
        return error if error is not None else ChannelRetired("channel closed by the pool")

    def _start(self, timed: bool = True) -> float:
        """Let an RPC start (or refuse it); its start time (0.0: not timed, see RpcCounter)."""
        if FORK_HOLD.active:
            FORK_HOLD.wait()
        if self.closed:
            raise self.refused()
        return 0.0

    def _end(
        self, code: grpc.StatusCode | None, error: object = None, started: float = 0.0
    ) -> None:
        pass

    def shut(self, error: GrpcPoolError) -> None:
        self._error = error
        self.closed = True


class RpcCounter(Gate):
    """Counts RPCs in flight on one channel: +1 at start, -1 when the call is done."""

    __slots__ = (
        "_alarm_every",
        "_eject_after",
        "_failures",
        "_lock",
        "_neutral",
        "_streak",
        "answered",
        "failed",
        "failing",
        "in_flight",
        "latency",
        "on_failing",
        "on_idle",
        "on_lost",
        "on_unavailable",
        "peak",
        "pending",
        "sampled",
        "total",
    )
    counts = True

    def __init__(
        self,
        eject_after: int = 0,
        failures: frozenset[grpc.StatusCode] = FAILURE_CODES,
        neutral: frozenset[grpc.StatusCode] = NEUTRAL_CODES,
        alarm_every: int = 0,
    ) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self.in_flight = 0
        self.total = 0
        self.peak = 0
        # Outcomes, for outlier ejection (the writer reads them; only _end writes):
        # calls a server answered (OK or the caller's own error), calls that failed
        # with a code in ``failures``, and failures in a row now. ``neutral`` codes
        # and calls that never reached a server count as neither.
        self._failures = failures
        self._neutral = neutral
        self.answered = 0
        self.failed = 0
        self.failing = 0
        # Set by the writer: called at every ``alarm_every`` failures in a row.
        self._alarm_every = alarm_every
        self.on_failing: Callable[[], None] | None = None
        # Latency, for peak_ewma and custom strategies (read without a lock): the
        # peak-EWMA estimate in seconds (0.0 before the first reply), when it was
        # last sampled, and (RPCs in flight, the sum of their start times) in one
        # tuple, so a reader never sees one without the other.
        self.latency = 0.0
        self.sampled = _monotonic()
        self.pending: tuple[int, float] = (0, 0.0)
        # Set by the writer while the channel drains; called when in_flight drops to 0.
        self.on_idle: Callable[[], None] | None = None
        # Passive ejection: called after eject_after UNAVAILABLE in a row.
        self._eject_after = eject_after
        self._streak = 0
        self.on_unavailable: Callable[[], None] | None = None
        # Set by the worker: an RPC proved the connection gone (a failed pick).
        self.on_lost: Callable[[], None] | None = None

    def _start(self, timed: bool = True) -> float:
        # timed (latency, pending): a unary call; a stream lasts as long as its caller wants
        if FORK_HOLD.active:
            FORK_HOLD.wait()
        now = _monotonic()
        with self._lock:  # one lock with shut: no RPC starts on a closed channel
            if self.closed:
                raise self.refused()
            self.in_flight += 1
            self.total += 1
            if self.in_flight > self.peak:
                self.peak = self.in_flight
            if timed:
                count, starts = self.pending
                self.pending = (count + 1, starts + now)
        return now if timed else 0.0

    def shut(self, error: GrpcPoolError) -> None:
        with self._lock:
            super().shut(error)

    def cost(self, now: float) -> float:
        """peak_ewma's cost at ``now``: max(latency, the mean age of the RPCs in flight)
        x (in flight + 1); 0.0 for an idle channel due a probe. No lock: one tuple read."""
        count, starts = self.pending
        if not count:
            return 0.0 if now - self.sampled > PROBE_AFTER else self.latency
        estimate, age = self.latency, now - starts / count
        return (age if age > estimate else estimate) * (count + 1)

    def signals(self) -> ChannelSignals:
        now = _monotonic()
        count, starts = self.pending
        return ChannelSignals(
            in_flight=self.in_flight,
            latency=self.latency,
            since_sample=now - self.sampled,
            pending_age=now - starts / count if count else 0.0,
            cost=self.cost(now),
            answered=self.answered,
            failed=self.failed,
            failing=self.failing,
        )

    def take_peak(self) -> int:
        """The most RPCs in flight at once since the last call (for autoscale)."""
        with self._lock:
            peak, self.peak = self.peak, self.in_flight
        return peak

    def _end(
        self, code: grpc.StatusCode | None, error: object = None, started: float = 0.0
    ) -> None:
        """An RPC ended with ``code`` (None: unknown, e.g. it never started);
        ``error``: the failed call or its exception (what tells a failed pick);
        ``started``: what ``_start`` returned (0.0: unknown, no latency sample)."""
        alarm = failed = False
        answered = code is _OK
        if not answered and code is not None:  # (Enum hashing is a Python call: not for OK)
            if code in self._failures:
                failed = code is not _UNAVAILABLE or not never_reached(error)
            else:
                answered = code is not _UNAVAILABLE and code not in self._neutral
        with self._lock:  # the in-flight count's own lock: no second one per RPC
            self.in_flight -= 1
            idle = self.in_flight == 0
            if answered:
                self.answered += 1
                self.failing = 0
            elif failed:
                self.failed += 1
                self.failing += 1
                alarm = self._alarm_every > 0 and self.failing % self._alarm_every == 0
            if started:
                self._sample(started, code, answered)
        callback = self.on_idle
        if idle and callback is not None:
            callback()
        if alarm:
            failing = self.on_failing
            if failing is not None:
                failing()
        if self._eject_after and code is not None:
            self._count_unavailable(code is grpc.StatusCode.UNAVAILABLE)

    def _sample(self, started: float, code: grpc.StatusCode | None, answered: bool) -> None:
        """Under the lock: the RPC leaves ``pending``; its round trip updates the peak
        EWMA. A failure, deadline or cancel only ever raises it and counts as the probe
        (a hedge's cancelled loser on a slow backend had no answer for that long)."""
        count, starts = self.pending
        self.pending = (count - 1, starts - started) if count > 1 else (0, 0.0)
        if code is None:
            return
        now = _monotonic()
        rtt, estimate = now - started, self.latency
        if rtt >= estimate:
            self.latency = rtt
        elif answered:
            decay = exp((self.sampled - now) / DECAY)
            self.latency = estimate * decay + rtt * (1.0 - decay)
        self.sampled = now

    def _count_unavailable(self, unavailable: bool) -> None:
        with self._lock:
            self._streak = self._streak + 1 if unavailable else 0
            eject = self._streak >= self._eject_after
            if eject:
                self._streak = 0
        callback = self.on_unavailable
        if eject and callback is not None:
            callback()


class _Ending:
    """Ends one RPC's count exactly once: from the call's termination callback, at
    the end of iteration, or when the caller drops the call. Holds the call weakly,
    so the accounting never keeps a dropped call alive (grpcio cancels a call when
    it is collected, and a stream then frees its HTTP/2 stream)."""

    __slots__ = ("_call", "_once", "_started")

    def __init__(self, counter: Gate, call: object, started: float = 0.0) -> None:
        self._started = started
        self._once = [counter]  # list.pop() is atomic: a second end finds it empty
        try:
            self._call: weakref.ref[Any] | None = weakref.ref(call)
        except TypeError:
            self._call = None

    def __call__(self, code: grpc.StatusCode | bool | None = True, error: object = None) -> None:
        try:
            counter = self._once.pop()
        except IndexError:
            return
        call = error
        if code is True:  # from the call's own callback: read its status
            call = self._call() if self._call is not None else None
            code = _code_of(call)
        counter._end(code, call, self._started)  # type: ignore[arg-type]


def _code_of(call: Any) -> grpc.StatusCode | None:
    if call is None:  # collected: the caller dropped it; not evidence either way
        return None
    try:
        code = call.code()
    except Exception:
        return None
    return code if isinstance(code, grpc.StatusCode) else None


class _CountedIterator:
    """A response iterator that is not a grpc call (an interceptor's generator):
    the count ends when iteration ends or fails, on ``close()``/``cancel()``, or
    when the iterator is collected. Anything else is the inner iterator's."""

    __slots__ = ("__weakref__", "_ending", "_finalizer", "_inner")

    def __init__(self, inner: Any, ending: _Ending) -> None:
        self._inner = inner
        self._ending = ending
        self._finalizer = weakref.finalize(self, ending, None)

    def __iter__(self) -> _CountedIterator:
        return self

    def __next__(self) -> Any:
        try:
            return next(self._inner)
        except StopIteration:
            self._finish(grpc.StatusCode.OK)
            raise
        except grpc.RpcError as exc:
            self._finish(exc.code() if isinstance(exc, grpc.Call) else None, exc)
            raise
        except BaseException:
            self._finish(None)
            raise

    def _finish(self, code: grpc.StatusCode | None, error: object = None) -> None:
        self._finalizer.detach()
        self._ending(code, error)

    def close(self) -> None:
        try:
            close = getattr(self._inner, "close", None)
            if close is not None:
                close()
        finally:
            self._finish(None)

    def cancel(self) -> bool:
        try:
            cancel = getattr(self._inner, "cancel", None)
            return bool(cancel()) if cancel is not None else False
        finally:
            self._finish(None)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def track(gate: Gate, result: Any, started: float) -> Any:
    """Count ``result`` until its RPC ends, whatever an interceptor returned;
    ``started``: what the gate's ``_start`` returned."""
    ending = _Ending(gate, result, started)
    add_callback = getattr(result, "add_callback", None)
    if add_callback is not None:  # a grpc call or future: told when it terminates
        try:
            added = add_callback(ending)
        except Exception:
            added = False
        if not added:  # already over
            ending()
        return result
    if hasattr(result, "__next__"):
        return _CountedIterator(result, ending)
    ending(None)  # nothing says when it ends: never hold a count for it
    return result
