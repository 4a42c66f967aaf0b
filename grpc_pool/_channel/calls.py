"""The counted multi-callables a pooled channel hands out: each RPC passes the
gate (+1 in flight, refused once the pool closed the channel) and is counted
until it ends; a blocking unary call that never reached a server may be sent
again elsewhere (``resend``)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import grpc

from .._base.errors import ChannelRetired
from .gate import STREAM_STREAM, STREAM_UNARY, UNARY_STREAM, UNARY_UNARY, Gate, track
from .outcomes import never_reached

__all__ = [
    "WRAPPERS",
    "Resend",
    "StreamStreamBase",
    "StreamUnaryBase",
    "UnaryStreamBase",
    "UnaryUnaryBase",
]

# resend(how, request, args, kwargs, error, started): the RPC again elsewhere, or raise.
Resend = Callable[[Any, Any, Any, Any, BaseException, float], Any]

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
    __slots__ = ("_gate", "_inner", "once")

    def __init__(self, inner: Any, gate: Gate) -> None:
        self._inner = inner
        self._gate = gate
        self.once: _Counted = self  # the same calls, never sent again elsewhere

    def _blocking(self, call: Any, request: Any, args: Any, kwargs: Any) -> Any:
        gate = self._gate
        started = gate._start()
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
        started = gate._start()
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
    """Blocking calls failed before reaching any server go to ``resend`` (set for the
    channels ``get_channel()``/``stub()`` hand out); ``once`` never resends (what
    ``pool.channel``, which retries itself, calls)."""

    __slots__ = ("_resend",)

    def __init__(self, inner: Any, gate: Gate, resend: Resend | None = None) -> None:
        super().__init__(inner, gate)
        self._resend = resend
        if resend is not None:
            self.once = _CountedUnaryUnary(inner, gate)

    def __call__(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        if self._resend is None:
            return self._blocking(self._inner, request, args, kwargs)
        return self._or_resend(None, request, args, kwargs)

    def with_call(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        if self._resend is None:
            return self._blocking(self._inner.with_call, request, args, kwargs)
        return self._or_resend("with_call", request, args, kwargs)

    def _or_resend(self, how: str | None, request: Any, args: Any, kwargs: Any) -> Any:
        started = time.monotonic()
        call = self._inner if how is None else self._inner.with_call
        try:
            return self._blocking(call, request, args, kwargs)
        except (grpc.RpcError, ChannelRetired) as error:
            if kwargs.get("wait_for_ready") or not never_reached(error):
                raise
            assert self._resend is not None
            return self._resend(how, request, args, kwargs, error, started)

    def future(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        return self._async(self._inner.future, request, args, kwargs)


class _CountedStreamUnary(_Counted, StreamUnaryBase):
    __slots__ = ()

    def __call__(self, request_iterator: Any, *args: Any, **kwargs: Any) -> Any:
        return self._blocking(self._inner, request_iterator, args, kwargs)

    def with_call(self, request_iterator: Any, *args: Any, **kwargs: Any) -> Any:
        return self._blocking(self._inner.with_call, request_iterator, args, kwargs)

    def future(self, request_iterator: Any, *args: Any, **kwargs: Any) -> Any:
        return self._async(self._inner.future, request_iterator, args, kwargs)


class _CountedUnaryStream(_Counted, UnaryStreamBase):
    __slots__ = ()

    def __call__(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        return self._async(self._inner, request, args, kwargs)


class _CountedStreamStream(_Counted, StreamStreamBase):
    __slots__ = ()

    def __call__(self, request_iterator: Any, *args: Any, **kwargs: Any) -> Any:
        return self._async(self._inner, request_iterator, args, kwargs)


WRAPPERS: dict[str, type[_Counted]] = {
    UNARY_UNARY: _CountedUnaryUnary,
    UNARY_STREAM: _CountedUnaryStream,
    STREAM_UNARY: _CountedStreamUnary,
    STREAM_STREAM: _CountedStreamStream,
}
