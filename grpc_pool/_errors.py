"""The error hierarchy: one root, builtin bases where a builtin catch fits."""

from __future__ import annotations

__all__ = [
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


class InvalidConfig(GrpcPoolError, ValueError):
    """A configuration value or argument is not allowed.

    The message names the field, the value given and what is allowed.
    """


class WouldEmptyPool(InvalidConfig):
    """``scale_down`` would leave the pool with no slot; nothing was changed."""


class NoChannelAvailable(GrpcPoolError):
    """No ready channel: raised at once, or when ``get_channel(timeout=...)`` expires."""


class PoolClosed(GrpcPoolError):
    """The pool was closed; it hands out no more channels."""


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
