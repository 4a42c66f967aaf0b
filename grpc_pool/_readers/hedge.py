"""Hedged requests (``PoolConfig.hedging``, ``HedgingPolicy``) on the one retry
path: ``Retrier.call`` hands a hedged method's RPC here with its ``Rpc``.

The first attempt goes to the picked channel; while no answer came within the
delay, the next goes to ANOTHER ready channel (never past the caller's deadline,
within ``max_attempts`` and the budget). The first answer wins (a unary
response; for a server stream, its first message or its end) and every other
attempt is cancelled, which the server sees. A failed attempt ends the RPC,
unless it is non-fatal (it never reached a server, or a code the policy lists):
then the next attempt goes at once, or after the server's pushback.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from collections import deque
from typing import Any

import grpc

from .._channel.outcomes import never_reached
from .._channel.pooled import PooledChannel
from .._config.hedging import HedgingPolicy
from .._config.retry import pushback
from .hedgecalls import END, HedgedFuture, HedgedStream
from .reader import Reader

__all__ = ["Hedger", "Latencies"]

_monotonic = time.monotonic
# The adaptive delay's cap, in medians of the method's latency.
MEDIAN_FACTOR = 3.0


class Latencies:
    """One method's latest latencies and the hedging delay taken from them."""

    __slots__ = ("_delay", "_lock", "_seen", "_window")

    def __init__(self, window: int) -> None:
        self._window: deque[float] = deque(maxlen=window)
        self._lock = threading.Lock()
        self._seen = 0
        self._delay: float | None = None

    def add(self, seconds: float, policy: HedgingPolicy) -> None:
        with self._lock:
            self._window.append(seconds)
            self._seen += 1
            # recomputed every 16 RPCs: a sort of <= window floats, off the common case
            if self._seen % 16 and self._delay is not None:
                return
            if len(self._window) < max(4, policy.window // 4):
                return
            ordered = sorted(self._window)
        index = min(len(ordered) - 1, math.ceil(policy.percentile * len(ordered)) - 1)
        # at most MEDIAN_FACTOR x the median: a slow backend that takes more than
        # the quantile's share of the traffic must not set the delay to its own latency
        median = ordered[len(ordered) // 2]
        self._delay = max(policy.min_delay, min(ordered[index], MEDIAN_FACTOR * median))

    @property
    def delay(self) -> float | None:
        """The adaptive delay; None until enough RPCs were seen (no hedge yet)."""
        return self._delay


class Hedger:
    """The pool's hedging: the policy, each method's latencies, the budget, and
    the counters ``stats()`` reads (``reader.hedges``, ``reader.hedges_won``)."""

    __slots__ = ("_latencies", "_lock", "_tokens", "policy", "reader")

    def __init__(self, reader: Reader, policy: HedgingPolicy) -> None:
        self.reader = reader
        self.policy = policy
        self._latencies: dict[str, Latencies] = {}
        self._lock = threading.Lock()
        self._tokens = float(policy.burst)

    def covers(self, method: str) -> bool:
        return self.policy.applies(method)

    def _delay(self, method: str) -> float | None:
        policy = self.policy
        if policy.delay is not None:
            return policy.delay
        found = self._latencies.get(method)
        return None if found is None else found.delay

    def _observe(self, method: str, seconds: float) -> None:
        found = self._latencies.get(method)
        if found is None:
            found = self._latencies.setdefault(method, Latencies(self.policy.window))
        found.add(seconds, self.policy)

    def _deposit(self) -> None:
        with self._lock:
            self._tokens = min(float(self.policy.burst), self._tokens + self.policy.budget)

    def _take(self) -> bool:
        """One hedge from the budget; False when it is spent."""
        with self._lock:
            if self._tokens < 1.0:
                return False
            self._tokens -= 1.0
            return True

    def run(self, rpc: Any, first: PooledChannel, method: str, stream: bool) -> Any:
        """The hedged RPC; ``rpc`` is its ``retry.Rpc`` (channels tried, deadline,
        how to send). A blocking unary call's result, a future, or a response
        iterator."""
        self._deposit()
        race = _Race(self, rpc, method, stream)
        race.launch(first)
        if stream:
            return HedgedStream(race)
        if rpc.how == "future":
            return HedgedFuture(race)
        return race.result()


class _Race:
    """One hedged RPC's attempts and the wait for the first answer."""

    def __init__(self, hedger: Hedger, rpc: Any, method: str, stream: bool) -> None:
        self.hedger = hedger
        self.rpc = rpc
        self.method = method
        self.stream = stream
        self.started = _monotonic()
        self.done: queue.SimpleQueue[tuple[Any, Any, BaseException | None]] = queue.SimpleQueue()
        self.calls: list[Any] = []
        self.live = 0

    def launch(self, channel: PooledChannel) -> bool:
        rpc = self.rpc
        if channel not in rpc.tried:
            rpc.tried.append(channel)
        left = rpc.remaining()
        try:
            call = rpc.send_hedge(channel, left, self.stream)
        except grpc.RpcError as error:
            self.calls.append(error)
            self.live += 1
            self.done.put((error, None, error))
            return True
        self.calls.append(call)
        self.live += 1
        if self.stream:
            threading.Thread(
                target=_first_message, args=(call, self.done), name="grpc_pool-hedge", daemon=True
            ).start()
        else:
            call.add_done_callback(lambda f: self.done.put((f, None, _exception(f))))
        return True

    def _hedge(self) -> bool:
        """Send the next attempt to another ready channel, if allowed."""
        hedger, rpc = self.hedger, self.rpc
        if len(self.calls) >= hedger.policy.max_attempts:
            return False
        left = rpc.remaining()
        if left is not None and left <= 0:
            return False
        channel = _other_backend(hedger.reader, rpc.tried)
        if channel is None or not hedger._take():
            return False
        next(hedger.reader.hedges)
        return self.launch(channel)

    def winner(self) -> tuple[Any, Any]:
        """(call, first item) of the first attempt that answered, the others
        cancelled; raises the error that ends the RPC."""
        delay = self.hedger._delay(self.method)
        due = None if delay is None else self.started + delay
        last: BaseException | None = None
        while True:
            timeout = None if due is None else max(0.0, due - _monotonic())
            try:
                call, item, error = self.done.get(timeout=timeout)
            except queue.Empty:  # the next hedge is due
                if self._hedge():
                    due = None if delay is None else _monotonic() + delay
                    continue
                due = None  # nothing more may be sent: wait for what is out
                if self.live == 0 and last is not None:
                    raise last from None
                continue
            self.live -= 1
            if error is None:
                self.cancel_others(call)
                if call is not self.calls[0]:
                    next(self.hedger.reader.hedges_won)
                self.hedger._observe(self.method, _monotonic() - self.started)
                return call, item
            last = error
            if never_reached(error) and self._resend(error):
                continue  # the transparent retry's, not a hedge: no budget taken
            if not self._non_fatal(error):
                self.cancel_others(call)
                raise error
            back = pushback(_trailing(error))
            if back is not None and back < 0:  # the server says: no more attempts
                due = None
                if self.live == 0:
                    raise error
            else:  # the next attempt at once, or after the server's pushback
                due = _monotonic() + (back or 0.0)

    def _resend(self, error: BaseException) -> bool:
        """An attempt that never reached a server goes again at once, by the
        transparent retry's rules (``Rpc.plan``); False when they say no."""
        rpc = self.rpc
        if rpc.plan(error) != 0.0:
            return False
        channel = rpc.next_channel()
        return channel is not None and self.launch(channel)

    def _non_fatal(self, error: BaseException) -> bool:
        if never_reached(error):
            return True
        code = getattr(error, "code", None)
        try:
            return callable(code) and code() in self.hedger.policy.non_fatal_codes
        except Exception:
            return False

    def cancel_others(self, winner: Any) -> None:
        for call in self.calls:
            if call is not winner:
                cancel = getattr(call, "cancel", None)
                if cancel is not None:
                    cancel()

    def result(self) -> Any:
        """A blocking unary call's answer (with_call: with its call)."""
        call, _ = self.winner()
        response = call.result()
        return (response, call) if self.rpc.how == "with_call" else response


def _other_backend(reader: Reader, tried: list[PooledChannel]) -> PooledChannel | None:
    """A hedge's channel: a ready one to a backend the RPC has not tried (the
    picker's choice when it finds one, else any), else one not tried."""
    state = reader.state
    where = {id(v.channel): v.address for v in state.views if v.channel is not None}
    used = {where.get(id(c)) or c.target for c in tried}
    fresh = [c for c in state.channels if (where.get(id(c)) or c.target) not in used]
    if not fresh:
        fresh = [c for c in state.channels if c not in tried]
    pick = state.pick
    if fresh and pick is not None:
        for _ in range(len(state.channels)):
            channel = pick()
            if channel in fresh:
                return channel
    return fresh[0] if fresh else None


def _exception(future: Any) -> BaseException | None:
    try:
        return future.exception(timeout=0)  # type: ignore[no-any-return]
    except Exception as error:  # cancelled: a loser, never read
        return error


def _trailing(error: BaseException) -> Any:
    try:
        return error.trailing_metadata()  # type: ignore[attr-defined]
    except Exception:
        return None


def _first_message(call: Any, done: queue.SimpleQueue[Any]) -> None:
    """A stream attempt's first message (or its end) onto ``done``."""
    try:
        item = next(call)
    except StopIteration:
        done.put((call, END, None))
    except grpc.RpcError as error:
        done.put((call, None, error))
    except BaseException as error:  # reported to the caller as the attempt's error
        done.put((call, None, error))
    else:
        done.put((call, item, None))
