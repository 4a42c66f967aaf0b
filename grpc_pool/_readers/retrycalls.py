"""The calls a transparent retry hands back: a future that re-issues a
never-reached RPC on another channel, and a response iterator that does so
while no response has arrived. Both are a ``grpc.Call`` and a ``grpc.Future``."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import grpc

from .retry import Attempts, never_reached, remaining

__all__ = ["RetryingFuture", "RetryingStream", "resend"]

if TYPE_CHECKING:
    _Future = grpc.Future[Any]
else:
    _Future = grpc.Future


def resend(attempts: Attempts, error: BaseException) -> Any:
    """The next attempt's call after ``error``, or None when it does not qualify
    (or no other channel is ready, or the time is spent)."""
    while True:
        channel = attempts.next_channel(error)
        if channel is None:
            return None
        try:
            return attempts.send(channel)
        except grpc.RpcError as again:  # e.g. that channel closed meanwhile
            error = again


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
            if error is not None:
                again = resend(self._attempts, error)
                if again is not None:
                    with self._condition:
                        self._current = again
                    _when_done(again, self)
                    return
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
        left = remaining(self._attempts.deadline)
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
                again = resend(self._attempts, error)
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
            again = resend(self._attempts, call)
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
