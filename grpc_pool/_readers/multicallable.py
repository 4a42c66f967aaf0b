"""The multi-callables of ``PoolChannel``: a recipe (method, serializers) whose
every invocation picks a ready pooled channel and runs on that channel's own
counted multi-callable."""

from __future__ import annotations

import time
from typing import Any

import grpc

from .._base.errors import NoChannelAvailable
from .._channel.calls import StreamStreamBase, StreamUnaryBase, UnaryStreamBase, UnaryUnaryBase
from .._channel.gate import STREAM_STREAM, STREAM_UNARY, UNARY_STREAM, UNARY_UNARY
from .._channel.pooled import PooledChannel
from .reader import Reader
from .retry import Retrier

__all__ = ["KINDS", "PoolMultiCallable"]

_DEADLINE_EXCEEDED = grpc.StatusCode.DEADLINE_EXCEEDED
_monotonic = time.monotonic


class PoolMultiCallable:
    __slots__ = ("_key", "_reader", "_retrier")

    def __init__(
        self, reader: Reader, retrier: Retrier, key: tuple[str, str, Any, Any, bool]
    ) -> None:
        self._reader = reader
        self._key = key
        # the pool's one retry when it may send this method again; None: never
        self._retrier = retrier if retrier.covers(key) else None

    def _pick(self, timeout: float | None, wait_for_ready: bool | None) -> tuple[Any, float | None]:
        """The picked channel's multi-callable, and the timeout left to pass on
        (what ``_run`` does inline before sending; bench row 1f measures it)."""
        pick = self._reader.state.pick  # bound to the published channels
        if pick is not None:
            return pick()._callable(self._key), timeout
        channel, timeout = _wait_channel(self._reader, timeout, wait_for_ready)
        return channel._callable(self._key), timeout

    def _run(
        self,
        how: str | None,
        request: Any,
        timeout: float | None,
        metadata: Any,
        credentials: Any,
        wait_for_ready: bool | None,
        compression: Any,
    ) -> Any:
        """The RPC on a picked channel (``how``: None for a call, or "with_call",
        "future"), through the pool's retry (``retry.Retrier.call``) when on."""
        reader = self._reader
        pick = reader.state.pick  # bound to the published channels
        if pick is not None:
            channel = pick()
        else:
            channel, timeout = _wait_channel(reader, timeout, wait_for_ready)
        retrier = self._retrier
        if retrier is None:
            inner = channel._callable(self._key).once
            return (inner if how is None else getattr(inner, how))(
                request,
                timeout=timeout,
                metadata=metadata,
                credentials=credentials,
                wait_for_ready=wait_for_ready,
                compression=compression,
            )
        call = {
            "timeout": timeout,
            "metadata": metadata,
            "credentials": credentials,
            "wait_for_ready": wait_for_ready,
            "compression": compression,
        }
        return retrier.call(channel, self._key, how, request, call)

    def __call__(
        self,
        request: Any,
        timeout: float | None = None,
        metadata: Any = None,
        credentials: Any = None,
        wait_for_ready: bool | None = None,
        compression: Any = None,
    ) -> Any:
        """The RPC on a picked channel (``request``: a message, or an iterator of
        them for client-streaming kinds), as grpcio's multi-callable would run it."""
        return self._run(None, request, timeout, metadata, credentials, wait_for_ready, compression)

    def __repr__(self) -> str:
        kind, method = self._key[0], self._key[1]
        return f"<{type(self).__name__} {kind} {method!r} over {self._reader.owner!r}>"


def _wait_channel(
    reader: Reader, timeout: float | None, wait_for_ready: bool | None
) -> tuple[PooledChannel, float | None]:
    """No channel ready now. As grpcio's channels do, an RPC waits while the pool
    is still making its first connections; once an attempt has failed it fails at
    once (UNAVAILABLE) unless ``wait_for_ready``, which waits for a ready channel
    within the RPC's own timeout (else DEADLINE_EXCEEDED). The time waited comes
    off the timeout passed on."""
    started = time.monotonic()
    if wait_for_ready:
        channel = reader.wait_channel(timeout)
    else:
        limit = reader.config.connect_timeout
        channel = reader.wait_channel(
            limit if timeout is None else min(timeout, limit), while_starting=True
        )
    waited = time.monotonic() - started
    if channel is None or (timeout is not None and waited >= timeout):
        if timeout is not None and waited >= timeout:
            raise NoChannelAvailable(
                f"no ready channel within the RPC's timeout ({timeout:g}s)",
                reader.owner,
                code=_DEADLINE_EXCEEDED,
            )
        raise reader.not_available(None)
    return channel, None if timeout is None else timeout - waited


class _UnaryResponse(PoolMultiCallable):
    """``with_call`` and ``future``: the kinds with one response."""

    __slots__ = ()

    def with_call(
        self,
        request: Any,
        timeout: float | None = None,
        metadata: Any = None,
        credentials: Any = None,
        wait_for_ready: bool | None = None,
        compression: Any = None,
    ) -> Any:
        return self._run(
            "with_call", request, timeout, metadata, credentials, wait_for_ready, compression
        )

    def future(
        self,
        request: Any,
        timeout: float | None = None,
        metadata: Any = None,
        credentials: Any = None,
        wait_for_ready: bool | None = None,
        compression: Any = None,
    ) -> Any:
        """A future; when no channel could be picked, the pool's error (a failed future)."""
        try:
            return self._run(
                "future", request, timeout, metadata, credentials, wait_for_ready, compression
            )
        except grpc.RpcError as error:  # the pool's: also a failed grpc.Future
            return error


class _UnaryUnary(_UnaryResponse, UnaryUnaryBase):
    __slots__ = ()


class _StreamUnary(_UnaryResponse, StreamUnaryBase):
    __slots__ = ()


class _UnaryStream(PoolMultiCallable, UnaryStreamBase):
    __slots__ = ()


class _StreamStream(PoolMultiCallable, StreamStreamBase):
    __slots__ = ()


KINDS: dict[str, type[PoolMultiCallable]] = {
    UNARY_UNARY: _UnaryUnary,
    UNARY_STREAM: _UnaryStream,
    STREAM_UNARY: _StreamUnary,
    STREAM_STREAM: _StreamStream,
}
