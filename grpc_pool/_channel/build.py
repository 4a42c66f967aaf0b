"""How a pooled channel is built: its own TCP connection (a local subchannel pool),
the pool's keepalive defaults, counting and the user's interceptors."""

from __future__ import annotations

import itertools

import grpc

from .._config.config import PoolConfig
from .._config.scaling import connections_per_channel
from . import channelz
from .gate import RpcCounter
from .pooled import PooledChannel, Reroute

__all__ = ["CHANNEL_ID", "LOCAL_SUBCHANNEL_POOL", "build_channel", "keepalive_options"]

# Keys the pool sets on every channel; a user value for them is replaced.
LOCAL_SUBCHANNEL_POOL = "grpc.use_local_subchannel_pool"
CHANNEL_ID = "grpc_pool.channel_id"

_channel_ids = itertools.count(1)


def _option_name(key: str | bytes) -> str:
    return key.decode("ascii", "replace") if isinstance(key, bytes) else key


def keepalive_options(config: PoolConfig) -> list[tuple[str, int]]:
    if config.keepalive_time is None:
        return []
    timeout_ms = int(config.keepalive_timeout * 1000)
    return [
        ("grpc.keepalive_time_ms", int(config.keepalive_time * 1000)),
        ("grpc.keepalive_timeout_ms", timeout_ms),
        # Measured on grpcio 1.85: without this, a black-holed connection's
        # keepalive ping is only given up after ~60 s, whatever keepalive_timeout_ms says.
        ("grpc.http2.ping_timeout_ms", timeout_ms),
        ("grpc.keepalive_permit_without_calls", int(config.keepalive_without_calls)),
    ]


def build_channel(
    config: PoolConfig,
    credentials: grpc.ChannelCredentials | None,
    slot: int,
    pool_label: str,
    reroute: Reroute | None = None,
) -> PooledChannel:
    """A new channel for ``slot`` on its own TCP connection (local subchannel pool);
    ``reroute``: the pool's retry of its RPCs (``_readers/retry.py``)."""
    channel_id = f"{pool_label}/{slot}/{next(_channel_ids)}"
    target = config.target_of(slot)
    reserved = (LOCAL_SUBCHANNEL_POOL, CHANNEL_ID)
    options = [o for o in config.options if _option_name(o[0]) not in reserved]
    options += [(LOCAL_SUBCHANNEL_POOL, 1), (CHANNEL_ID, channel_id)]
    given = {_option_name(o[0]) for o in config.options}
    options += [o for o in keepalive_options(config) if o[0] not in given]
    compression = config.compression

    def create() -> grpc.Channel:
        if credentials is None:
            return grpc.insecure_channel(target, options=options, compression=compression)
        return grpc.secure_channel(target, credentials, options=options, compression=compression)

    channelz_id = None
    if connections_per_channel(options) > 1 and channelz.channelz_enabled(options):
        # Connection scaling: a channel may hold several connections, shown in
        # SlotStats.connections from channelz. Its channelz id is the newest top
        # channel with this target, right after creating it (see find_channel_id).
        with channelz.CREATION_LOCK:
            raw = create()
            channelz_id = channelz.find_channel_id(target)
    else:
        raw = create()
    counter = _counter(config) if config.track_in_flight else None
    interceptors = tuple(config.interceptors)
    rpc = grpc.intercept_channel(raw, *interceptors) if interceptors else raw
    pooled = PooledChannel(raw, rpc, counter, slot, target, channel_id, reroute)
    pooled.channelz_id = channelz_id
    return pooled


def _counter(config: PoolConfig) -> RpcCounter:
    ejection = config.outlier_ejection
    if ejection is None:  # outcomes still counted (latency, signals); nobody alarmed
        return RpcCounter(config.eject_after_unavailable)
    # Every failure in a row wakes the writer (the Ejector keeps one wake pending at
    # most): it sums the runs of all the channels on one backend.
    alarm = 1 if ejection.consecutive_failures else 0
    return RpcCounter(
        config.eject_after_unavailable, ejection.failure_codes, ejection.neutral_codes, alarm
    )
