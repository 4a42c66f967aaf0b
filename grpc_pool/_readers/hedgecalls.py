"""What a hedged RPC hands back (``hedge._Race`` decides the winner): a unary
``future()`` whose race is waited on a thread of its own, and a server stream's
response iterator whose first ``next()`` waits for the race; from then on both
are the winning (or the failing) attempt's call."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Protocol

import grpc

__all__ = ["END", "HedgedFuture", "HedgedStream", "Race"]

if TYPE_CHECKING:
    _Future = grpc.Future[Any]
else:
    _Future = grpc.Future

# A stream attempt that ended before its first message (the race's "item").
END = object()


class Race(Protocol):
    """What these calls need of a hedged RPC's race (``hedge._Race``)."""

    calls: list[Any]

    def winner(self) -> tuple[Any, Any]: ...

    def cancel_others(self, winner: Any) -> None: ...


class HedgedFuture(_Future):
    """A hedged unary ``future()``: the race waits on a thread of its own; once
    it is decided, everything is the winning (or the failing) attempt's call."""

    def __init__(self, race: Race) -> None:
        self._race = race
        self._outcome: Any = None
        self._decided = threading.Event()
        self._callbacks: list[Any] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._decide, name="grpc_pool-hedge", daemon=True).start()

    def _decide(self) -> None:
        try:
            self._outcome, _ = self._race.winner()
        except BaseException as error:  # the attempt that ended the RPC: a failed call
            self._outcome = error
        with self._lock:
            self._decided.set()
            callbacks, self._callbacks = self._callbacks, []
        for fn in callbacks:
            fn(self)

    def _call(self, timeout: float | None = None) -> Any:
        if not self._decided.wait(timeout):
            raise grpc.FutureTimeoutError()
        return self._outcome

    def result(self, timeout: float | None = None) -> Any:
        outcome = self._call(timeout)
        if not hasattr(outcome, "result"):
            raise outcome
        return outcome.result()

    def exception(self, timeout: float | None = None) -> Any:
        outcome = self._call(timeout)
        return outcome.exception() if hasattr(outcome, "exception") else outcome

    def traceback(self, timeout: float | None = None) -> Any:
        outcome = self._call(timeout)
        return outcome.traceback() if hasattr(outcome, "traceback") else None

    def add_done_callback(self, fn: Any) -> None:
        with self._lock:
            if not self._decided.is_set():
                self._callbacks.append(fn)
                return
        fn(self)

    def cancel(self) -> bool:
        self._race.cancel_others(None)
        return True

    def cancelled(self) -> bool:
        return self._decided.is_set() and bool(getattr(self._outcome, "cancelled", bool)())

    def running(self) -> bool:
        return not self._decided.is_set()

    def done(self) -> bool:
        return self._decided.is_set()

    def __getattr__(self, name: str) -> Any:  # code, details, metadata: the outcome's
        return getattr(self._call(), name)


class HedgedStream:
    """A server stream's response iterator: its first ``next()`` waits for the
    race; from then on it is the winning call's (its ``grpc.Call`` methods too)."""

    def __init__(self, race: Race) -> None:
        self._race: Race | None = race
        self._call: Any = race.calls[0]
        self._first: Any = END

    def _settle(self) -> None:
        race = self._race
        if race is not None:
            self._race = None
            self._call, self._first = race.winner()
            if self._first is END:
                self._first = StopIteration

    def __iter__(self) -> HedgedStream:
        return self

    def __next__(self) -> Any:
        if self._race is not None:
            self._settle()
        first = self._first
        if first is not END:
            self._first = END
            if first is StopIteration:
                raise StopIteration
            return first
        return next(self._call)

    def cancel(self) -> bool:
        race = self._race
        if race is not None:
            race.cancel_others(None)
        return bool(self._call.cancel())

    def __getattr__(self, name: str) -> Any:  # initial_metadata, code, details, ...
        if self._race is not None and name != "add_done_callback":
            self._settle()
        return getattr(self._call, name)
