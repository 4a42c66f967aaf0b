"""The multi-callables of ``PoolChannel``: a recipe (method, serializers) whose
every invocation picks a ready pooled channel and runs on that channel's own
counted multi-callable."""

from __future__ import annotations

import time
from typing import Any

import grpc

from .._base.errors import NoChannelAvailable
from .._channel.gate import (
    STREAM_STREAM,
    STREAM_UNARY,
    UNARY_STREAM,
    UNARY_UNARY,
    StreamStreamBase,
    StreamUnaryBase,
    UnaryStreamBase,
    UnaryUnaryBase,
)
from .._channel.pooled import PooledChannel
from .reader import Reader

__all__ = ["KINDS", "PoolMultiCallable"]

_DEADLINE_EXCEEDED = grpc.StatusCode.DEADLINE_EXCEEDED


class PoolMultiCallable:
    __slots__ = ("_key", "_reader")

    def __init__(self, reader: Reader, key: tuple[str, str, Any, Any, bool]) -> None:
        self._reader = reader
        self._key = key

    def _pick(self, timeout: float | None, wait_for_ready: bool | None) -> tuple[Any, float | None]:
        """The picked channel's multi-callable, and the timeout left to pass on."""
        pick = self._reader.state.pick  # bound to the published channels
        if pick is not None:
            return pick()._callable(self._key), timeout
        channel, timeout = _wait_channel(self._reader, timeout, wait_for_ready)
        return channel._callable(self._key), timeout

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
        inner, timeout = self._pick(timeout, wait_for_ready)
        return inner(
            request,
            timeout=timeout,
            metadata=metadata,
            credentials=credentials,
            wait_for_ready=wait_for_ready,
            compression=compression,
        )

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
        inner, timeout = self._pick(timeout, wait_for_ready)
        return inner.with_call(
            request,
            timeout=timeout,
            metadata=metadata,
            credentials=credentials,
            wait_for_ready=wait_for_ready,
            compression=compression,
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
            inner, timeout = self._pick(timeout, wait_for_ready)
        except grpc.RpcError as error:  # the pool's: also a failed grpc.Future
            return error
        return inner.future(
            request,
            timeout=timeout,
            metadata=metadata,
            credentials=credentials,
            wait_for_ready=wait_for_ready,
            compression=compression,
        )


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
