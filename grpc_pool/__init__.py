"""grpc_pool: a thread-safe pool of grpcio client channels, each on its own TCP connection.

import grpc_pool
channel = grpc_pool.insecure_channel("localhost:50051", size=4)  # was grpc.insecure_channel
stub = MyServiceStub(channel)  # built once; every RPC picks a ready pooled channel
"""

from __future__ import annotations

import logging

from . import _cli_env  # noqa: F401  (first: it may set GRPC_VERBOSITY before grpc loads)
from ._base.errors import (
    ChannelRetired,
    GrpcPoolError,
    InvalidConfig,
    NoChannelAvailable,
    PoolClosed,
    PoolTimeout,
    ScalingInProgress,
    StrategyError,
    WouldEmptyPool,
)
from ._base.redact import RedactingNullHandler
from ._channel.pooled import PooledChannel
from ._channel.signals import ChannelSignals
from ._config.config import PoolConfig
from ._config.hedging import HedgingPolicy
from ._config.outliers import OutlierEjection
from ._config.retry import RetryPolicy
from ._config.validate import Strategy
from ._constructors import insecure_channel, secure_channel
from ._contract.events import (
    AutoscaleEvent,
    BackendEjectedEvent,
    BackendUnejectedEvent,
    ChannelConnectedEvent,
    ChannelDisconnectedEvent,
    ConnectionFailedEvent,
    GetChannelEvent,
    HealthCheckEvent,
    PoolClosedEvent,
    PoolEvent,
    PoolStartedEvent,
    ReconnectScheduledEvent,
    ResizeEvent,
    ResolvedEvent,
    ScaleDownEvent,
    ScaleEvent,
    ScaleUpEvent,
    StatusEvent,
    StreamLimitEvent,
)
from ._pool import Pool
from ._readers.poolchannel import PoolChannel
from ._readers.stats import BackendStats, EjectionStats, PoolStats, PoolStatus, SlotStats

__version__ = "0.1.0"

__all__ = [
    "AutoscaleEvent",
    "BackendEjectedEvent",
    "BackendStats",
    "BackendUnejectedEvent",
    "ChannelConnectedEvent",
    "ChannelDisconnectedEvent",
    "ChannelRetired",
    "ChannelSignals",
    "ConnectionFailedEvent",
    "EjectionStats",
    "GetChannelEvent",
    "GrpcPoolError",
    "HealthCheckEvent",
    "HedgingPolicy",
    "InvalidConfig",
    "NoChannelAvailable",
    "OutlierEjection",
    "Pool",
    "PoolChannel",
    "PoolClosed",
    "PoolClosedEvent",
    "PoolConfig",
    "PoolEvent",
    "PoolStartedEvent",
    "PoolStats",
    "PoolStatus",
    "PoolTimeout",
    "PooledChannel",
    "ReconnectScheduledEvent",
    "ResizeEvent",
    "ResolvedEvent",
    "RetryPolicy",
    "ScaleDownEvent",
    "ScaleEvent",
    "ScaleUpEvent",
    "ScalingInProgress",
    "SlotStats",
    "StatusEvent",
    "Strategy",
    "StrategyError",
    "StreamLimitEvent",
    "WouldEmptyPool",
    "__version__",
    "insecure_channel",
    "secure_channel",
]

# Public classes and functions show as grpc_pool.X in reprs, tracebacks and docs.
for _name in __all__:
    _obj = globals()[_name]
    if isinstance(_obj, type) or callable(_obj):
        _obj.__module__ = __name__
del _name, _obj

# A NullHandler that also hides targets' user-info in every grpc_pool.* record.
logging.getLogger(__name__).addHandler(RedactingNullHandler())
