"""The error hierarchy: one root, builtin bases where a builtin catch fits."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import grpc

__all__ = [
    "ChannelRetired",
    "GrpcPoolError",
    "InvalidConfig",
    "NoChannelAvailable",
    "PoolClosed",
    "PoolTimeout",
    "ScalingInProgress",
    "StrategyError",
    "WouldEmptyPool",
]


class GrpcPoolError(Exception):
    """Root of every error grpc_pool raises.

    Errors about a pool render as ``"<pool repr>: message"``.
    """

    def __init__(self, message: str, pool: object | None = None) -> None:
        self.pool = pool
        super().__init__(f"{pool!r}: {message}" if pool is not None else message)


if TYPE_CHECKING:
    _Future = grpc.Future[Any]
else:
    _Future = grpc.Future


class _RpcFailure(grpc.RpcError, grpc.Call, _Future):
    """A pool error that is also a finished, failed ``grpc.Call`` and ``grpc.Future``,
    as grpcio's own errors are: code that catches ``grpc.RpcError`` (GAPIC retries,
    user handlers) reads ``code()``/``details()``, and grpcio's interceptor machinery
    (which returns a raised RpcError as the call's outcome) calls ``result()``."""

    _code = grpc.StatusCode.UNAVAILABLE

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return str(self)

    def initial_metadata(self) -> tuple[Any, ...]:
        return ()

    def trailing_metadata(self) -> tuple[Any, ...]:
        return ()

    def is_active(self) -> bool:
        return False

    def time_remaining(self) -> float:
        return None  # type: ignore[return-value]

    def cancel(self) -> bool:
        return False

    def add_callback(self, callback: Any) -> bool:
        return False

    # -- grpc.Future: done, failed with this error ---------------------------
    def cancelled(self) -> bool:
        return False

    def running(self) -> bool:
        return False

    def done(self) -> bool:
        return True

    def result(self, timeout: float | None = None) -> Any:
        raise self

    def exception(self, timeout: float | None = None) -> Exception:
        return self

    def traceback(self, timeout: float | None = None) -> Any:
        return self.__traceback__

    def add_done_callback(self, fn: Any) -> None:
        fn(self)


class InvalidConfig(GrpcPoolError, ValueError):
    """A configuration value or argument is not allowed.

    The message names the field, the value given and what is allowed.
    """


class WouldEmptyPool(InvalidConfig):
    """``scale_down`` would leave the pool with no slot; nothing was changed."""


class NoChannelAvailable(GrpcPoolError, _RpcFailure):
    """No ready channel: raised at once, or when a wait for one expires.

    Also a ``grpc.RpcError``: ``code()`` is ``UNAVAILABLE`` (``DEADLINE_EXCEEDED``
    when an RPC with ``wait_for_ready=True`` ran out of time waiting), ``details()``
    names the pool and its last errors.
    """

    def __init__(
        self,
        message: str,
        pool: object | None = None,
        code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE,
    ) -> None:
        super().__init__(message, pool)
        self._code = code


class PoolClosed(GrpcPoolError, _RpcFailure):
    """The pool was closed; it hands out no more channels and starts no RPC.

    Also a ``grpc.RpcError`` with ``code()`` ``CANCELLED``, like an RPC that a
    closing channel cancels.
    """

    _code = grpc.StatusCode.CANCELLED


class ChannelRetired(GrpcPoolError, _RpcFailure):
    """An RPC or stub was started on a pooled channel that the pool has since
    retired and closed (a caller kept it past ``retire_grace``). Nothing reached
    grpcio. ``code()`` is ``UNAVAILABLE``: pick a channel again (or use ``pool.channel``).
    """


class PoolTimeout(GrpcPoolError, TimeoutError):
    """A wait on the pool (``wait_ready``) ran out of time."""


class ScalingInProgress(GrpcPoolError):
    """Another scaling call on this pool is running; this one did not wait."""


class StrategyError(GrpcPoolError):
    """A custom strategy's ``pick()`` raised, or returned something that is not one
    of the ready channels it was given. The message names the strategy; the
    original exception, if any, is the ``__cause__``. A bug in the strategy, not
    a lack of channels: it is not retried and not a ``NoChannelAvailable``.
    """
