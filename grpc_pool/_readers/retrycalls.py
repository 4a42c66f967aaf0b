"""What a retried RPC keeps and hands back (``retry.Rpc`` drives them): the
replayable requests of a client stream, a future that sends its RPC again when
an attempt fails so that it may, and a response iterator that does so while no
response has arrived. Both calls are a ``grpc.Call`` and a ``grpc.Future``."""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Protocol

import grpc

from .._channel.outcomes import never_reached

__all__ = ["REPLAY_LIMIT", "Attempts", "Requests", "RetryingFuture", "RetryingStream"]

# Requests of a client-streaming RPC kept for sending it again (a failed pick
# comes within milliseconds: grpcio has pulled one or two by then).
REPLAY_LIMIT = 32


if TYPE_CHECKING:
    _Future = grpc.Future[Any]
else:
    _Future = grpc.Future


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


class Attempts(Protocol):
    """What these calls need of their RPC (``retry.Rpc``)."""

    deadline: float | None

    def plan(self, error: BaseException) -> float | None: ...

    def next_channel(self) -> Any: ...

    def send(self, channel: Any, timeout: float | None) -> Any: ...

    def resend(self, error: BaseException) -> Any: ...


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else deadline - time.monotonic()


class RetryingFuture(grpc.Call, _Future):
    """A unary-response future: when its attempt fails before reaching a server it
    is sent again on another channel; callers see the last attempt's outcome."""

    def __init__(self, attempts: Attempts, first: Any) -> None:
        self._attempts = attempts
        self._condition = threading.Condition(threading.Lock())
        self._current = first
        self._settled = False
        self._cancelled = False
        self._done: list[Callable[[Any], None]] = []
        self._calls: list[Callable[[], None]] = []
        _when_done(first, self)

    def _on_done(self, inner: Any) -> None:
        if inner is not self._current:
            return
        if not self._cancelled and not inner.cancelled():
            error = inner.exception()
            if error is not None and self._again(error):
                return
        self._settle()

    def _again(self, error: BaseException) -> bool:
        """Send the RPC again after ``error`` if it may be (after a policy's delay,
        waited on a timer thread, never on grpcio's); False: ``error`` is final."""
        attempts = self._attempts
        delay = attempts.plan(error)
        if delay is None:
            return False
        if delay > 0:
            timer = threading.Timer(delay, self._send_next, (error,))
            timer.name = "grpc_pool-retry-delay"
            timer.daemon = True
            timer.start()
            return True
        return self._send_next(error, waited=False)

    def _send_next(self, error: BaseException, waited: bool = True) -> bool:
        while True:
            channel = None if self._cancelled else self._attempts.next_channel()
            if channel is None:
                break
            try:
                again = self._attempts.send(channel, _remaining(self._attempts.deadline))
            except grpc.RpcError as failed:  # e.g. that channel closed meanwhile
                error = failed
                if self._attempts.plan(error) == 0.0:
                    continue
                break
            with self._condition:
                self._current = again
            _when_done(again, self)
            return True
        if waited:  # on the timer's thread: nobody else settles it
            self._settle()
        return False

    def _settle(self) -> None:
        with self._condition:
            self._settled = True
            self._condition.notify_all()
            done, self._done = self._done, []
            calls, self._calls = self._calls, []
        for fn in done:
            fn(self)
        for call in calls:
            call()

    def _wait(self, timeout: float | None) -> Any:
        with self._condition:
            if not self._condition.wait_for(lambda: self._settled, timeout):
                raise grpc.FutureTimeoutError()
            return self._current

    # -- grpc.Future -------------------------------------------------------------------
    def cancel(self) -> bool:
        self._cancelled = True
        return bool(self._current.cancel())

    def cancelled(self) -> bool:
        return bool(self._current.cancelled())

    def running(self) -> bool:
        return not self._settled

    def done(self) -> bool:
        return self._settled

    def result(self, timeout: float | None = None) -> Any:
        return self._wait(timeout).result()

    def exception(self, timeout: float | None = None) -> Any:
        return self._wait(timeout).exception()

    def traceback(self, timeout: float | None = None) -> Any:
        return self._wait(timeout).traceback()

    def add_done_callback(self, fn: Callable[[Any], None]) -> None:
        with self._condition:
            if not self._settled:
                self._done.append(fn)
                return
        fn(self)

    # -- grpc.Call (of the last attempt, once settled) ---------------------------------
    def initial_metadata(self) -> Any:
        return self._wait(None).initial_metadata()

    def trailing_metadata(self) -> Any:
        return self._wait(None).trailing_metadata()

    def code(self) -> Any:
        return self._wait(None).code()

    def details(self) -> Any:
        return self._wait(None).details()

    def is_active(self) -> bool:
        return not self._settled

    def time_remaining(self) -> Any:
        left = _remaining(self._attempts.deadline)
        return None if left is None else max(0.0, left)

    def add_callback(self, callback: Callable[[], None]) -> bool:
        with self._condition:
            if self._settled:
                return False
            self._calls.append(callback)
            return True

    def __repr__(self) -> str:
        return f"<{type(self).__name__} of {self._current!r}>"


def _when_done(attempt: Any, future: RetryingFuture) -> None:
    """Call ``future._on_done`` once ``attempt`` ends, holding neither strongly:
    a dropped future is collected, and so is its attempt, which grpcio then
    cancels (``add_done_callback`` would bind the attempt into its own state)."""
    ref = weakref.ref(future)

    def on_done() -> None:
        live = ref()
        if live is not None:
            live._on_done(live._current)

    try:
        added = attempt.add_callback(on_done)
    except Exception:
        added = False
    if not added:  # already over
        future._on_done(attempt)


class RetryingStream(grpc.Call, _Future):
    """A response stream: if the first ``next()`` or ``initial_metadata()`` finds the
    call failed before reaching a server (nothing received), it is sent again on
    another channel; from the first response on, everything is the call's."""

    __slots__ = ("_attempts", "_call", "_settled")

    def __init__(self, attempts: Attempts, call: Any) -> None:
        self._attempts = attempts
        self._call = call
        self._settled = False

    def __iter__(self) -> RetryingStream:
        return self

    def __next__(self) -> Any:
        if self._settled:
            return next(self._call)
        while True:
            try:
                item = next(self._call)
            except grpc.RpcError as error:
                again = self._attempts.resend(error)
                if again is None:
                    self._settled = True
                    raise
                self._call = again
                continue
            except BaseException:
                self._settled = True
                raise
            self._settled = True
            return item

    def initial_metadata(self) -> Any:
        while True:
            call = self._call
            metadata = call.initial_metadata()
            if self._settled or not (call.done() and never_reached(call)):
                return metadata
            again = self._attempts.resend(call)
            if again is None:
                self._settled = True
                return metadata
            self._call = again

    # -- everything else is the current call's -----------------------------------------
    def trailing_metadata(self) -> Any:
        return self._call.trailing_metadata()

    def code(self) -> Any:
        return self._call.code()

    def details(self) -> Any:
        return self._call.details()

    def is_active(self) -> bool:
        return bool(self._call.is_active())

    def time_remaining(self) -> Any:
        return self._call.time_remaining()

    def add_callback(self, callback: Callable[[], None]) -> bool:
        return bool(self._call.add_callback(callback))

    def cancel(self) -> bool:
        self._settled = True
        return bool(self._call.cancel())

    def cancelled(self) -> bool:
        return bool(self._call.cancelled())

    def running(self) -> bool:
        return bool(self._call.running())

    def done(self) -> bool:
        return bool(self._call.done())

    def result(self, timeout: float | None = None) -> Any:
        return self._call.result(timeout)

    def exception(self, timeout: float | None = None) -> Any:
        return self._call.exception(timeout)

    def traceback(self, timeout: float | None = None) -> Any:
        return self._call.traceback(timeout)

    def add_done_callback(self, fn: Callable[[Any], None]) -> None:
        self._call.add_done_callback(lambda _call: fn(self))

    def __getattr__(self, name: str) -> Any:  # e.g. grpcio's debug_error_string
        return getattr(self._call, name)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} of {self._call!r}>"
