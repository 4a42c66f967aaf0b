"""The counted multi-callables a pooled channel hands out: each RPC passes the
gate (+1 in flight, refused once the pool closed the channel) and is counted
until it ends. With the pool's retry bound (``BoundRetry``, see
``_readers/retry.py``) every kind of RPC is handed to it; ``once`` is the same
multi-callable without it (what the retry itself sends each attempt with)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Protocol

import grpc

from .gate import STREAM_STREAM, STREAM_UNARY, UNARY_STREAM, UNARY_UNARY, Gate, track

__all__ = [
    "WRAPPERS",
    "BoundRetry",
    "StreamStreamBase",
    "StreamUnaryBase",
    "UnaryStreamBase",
    "UnaryUnaryBase",
]


class BoundRetry(Protocol):
    """The pool's one retry mechanism for one multi-callable of one channel.

    ``start(how, request, args, kwargs)``: the whole RPC (first attempt on this
    channel, then the next ones); ``how`` is None, "with_call" or "future".
    ``failed(how, request, args, kwargs, error, started)``: a blocking unary call
    whose first attempt, made inline, failed with ``error``. ``hedged``: its
    RPCs are hedged (a blocking call then goes to ``start`` too)."""

    hedged: bool

    def start(self, how: str | None, request: Any, args: Any, kwargs: Any) -> Any: ...

    def failed(
        self, how: str | None, request: Any, args: Any, kwargs: Any, error: Any, started: float
    ) -> Any: ...


# Counting wraps the multi-callables directly (not a grpc interceptor): a blocking
# unary call costs one extra frame instead of grpcio's interceptor machinery.


if TYPE_CHECKING:  # generic in the stubs, plain classes at run time
    UnaryUnaryBase = grpc.UnaryUnaryMultiCallable[Any, Any]
    StreamUnaryBase = grpc.StreamUnaryMultiCallable[Any, Any]
    UnaryStreamBase = grpc.UnaryStreamMultiCallable[Any, Any]
    StreamStreamBase = grpc.StreamStreamMultiCallable[Any, Any]
else:
    UnaryUnaryBase = grpc.UnaryUnaryMultiCallable
    StreamUnaryBase = grpc.StreamUnaryMultiCallable
    UnaryStreamBase = grpc.UnaryStreamMultiCallable
    StreamStreamBase = grpc.StreamStreamMultiCallable


class _Counted:
    __slots__ = ("_gate", "_inner", "_retry", "once")
    timed = False  # its RPCs' durations are round trips (peak_ewma's samples): unary only

    def __init__(self, inner: Any, gate: Gate, retry: BoundRetry | None = None) -> None:
        self._inner = inner
        self._gate = gate
        self._retry = retry
        # the same calls, never sent again elsewhere
        self.once: _Counted = self if retry is None else type(self)(inner, gate)

    def _blocking(self, call: Any, request: Any, args: Any, kwargs: Any) -> Any:
        gate = self._gate
        started = gate._start(self.timed)
        try:
            result = call(request, *args, **kwargs)
        except grpc.RpcError as exc:
            gate._end(exc.code() if isinstance(exc, grpc.Call) else None, exc, started)
            raise
        except ValueError as exc:  # grpcio's "closed channel": closed after _start
            gate._end(None, None, started)
            if gate.closed:
                raise gate.refused() from exc
            raise
        except BaseException:
            gate._end(None, None, started)
            raise
        gate._end(grpc.StatusCode.OK, None, started)
        return result

    def _async(self, call: Any, request: Any, args: Any, kwargs: Any) -> Any:
        gate = self._gate
        started = gate._start(self.timed)
        try:
            result = call(request, *args, **kwargs)
        except ValueError as exc:
            gate._end(None, None, started)
            if gate.closed:
                raise gate.refused() from exc
            raise
        except BaseException:
            gate._end(None, None, started)
            raise
        return track(gate, result, started) if gate.counts else result


class _CountedUnaryUnary(_Counted, UnaryUnaryBase):
    """A blocking call's first attempt runs inline (the hot path); only its
    failure reaches the retry."""

    __slots__ = ()
    timed = True

    def __call__(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        if self._retry is None:
            return self._blocking(self._inner, request, args, kwargs)
        return self._or_retry(None, self._inner, request, args, kwargs)

    def with_call(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        if self._retry is None:
            return self._blocking(self._inner.with_call, request, args, kwargs)
        return self._or_retry("with_call", self._inner.with_call, request, args, kwargs)

    def _or_retry(self, how: str | None, call: Any, request: Any, args: Any, kwargs: Any) -> Any:
        retry = self._retry
        assert retry is not None
        if retry.hedged:
            return retry.start(how, request, args, kwargs)
        started = time.monotonic()
        try:
            return self._blocking(call, request, args, kwargs)
        except grpc.RpcError as error:
            return retry.failed(how, request, args, kwargs, error, started)

    def future(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        if self._retry is None:
            return self._async(self._inner.future, request, args, kwargs)
        return self._retry.start("future", request, args, kwargs)


class _CountedStreamUnary(_Counted, StreamUnaryBase):
    __slots__ = ()

    def __call__(self, request_iterator: Any, *args: Any, **kwargs: Any) -> Any:
        if self._retry is None:
            return self._blocking(self._inner, request_iterator, args, kwargs)
        return self._retry.start(None, request_iterator, args, kwargs)

    def with_call(self, request_iterator: Any, *args: Any, **kwargs: Any) -> Any:
        if self._retry is None:
            return self._blocking(self._inner.with_call, request_iterator, args, kwargs)
        return self._retry.start("with_call", request_iterator, args, kwargs)

    def future(self, request_iterator: Any, *args: Any, **kwargs: Any) -> Any:
        if self._retry is None:
            return self._async(self._inner.future, request_iterator, args, kwargs)
        return self._retry.start("future", request_iterator, args, kwargs)


class _CountedUnaryStream(_Counted, UnaryStreamBase):
    __slots__ = ()

    def __call__(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        if self._retry is None:
            return self._async(self._inner, request, args, kwargs)
        return self._retry.start(None, request, args, kwargs)


class _CountedStreamStream(_Counted, StreamStreamBase):
    __slots__ = ()

    def __call__(self, request_iterator: Any, *args: Any, **kwargs: Any) -> Any:
        if self._retry is None:
            return self._async(self._inner, request_iterator, args, kwargs)
        return self._retry.start(None, request_iterator, args, kwargs)


WRAPPERS: dict[str, type[_Counted]] = {
    UNARY_UNARY: _CountedUnaryUnary,
    UNARY_STREAM: _CountedUnaryStream,
    STREAM_UNARY: _CountedStreamUnary,
    STREAM_STREAM: _CountedStreamStream,
}
