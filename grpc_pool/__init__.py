"""grpc_pool: a thread-safe pool of grpcio client channels, each on its own TCP connection.

import grpc_pool
with grpc_pool.Pool("localhost:50051", size=4, insecure=True) as pool:
    pool.wait_ready(timeout=10)
    stub = MyServiceStub(pool.get_channel())
"""

from __future__ import annotations

import logging

from ._channel import PooledChannel
from ._config import PoolConfig
from ._errors import (
    GrpcPoolError,
    InvalidConfig,
    NoChannelAvailable,
    PoolClosed,
    PoolTimeout,
    ScalingInProgress,
    WouldEmptyPool,
)
from ._events import (
    AutoscaleEvent,
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
from ._stats import BackendStats, PoolStats, PoolStatus, SlotStats
from ._strategy import Strategy

__version__ = "0.1.0"

__all__ = [
    "AutoscaleEvent",
    "BackendStats",
    "ChannelConnectedEvent",
    "ChannelDisconnectedEvent",
    "ConnectionFailedEvent",
    "GetChannelEvent",
    "GrpcPoolError",
    "HealthCheckEvent",
    "InvalidConfig",
    "NoChannelAvailable",
    "Pool",
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
    "ScaleDownEvent",
    "ScaleEvent",
    "ScaleUpEvent",
    "ScalingInProgress",
    "SlotStats",
    "StatusEvent",
    "Strategy",
    "StreamLimitEvent",
    "WouldEmptyPool",
    "__version__",
]

# Public classes show as grpc_pool.X in reprs, tracebacks and docs.
for _name in __all__:
    _obj = globals()[_name]
    if isinstance(_obj, type):
        _obj.__module__ = __name__
del _name, _obj

logging.getLogger(__name__).addHandler(logging.NullHandler())
