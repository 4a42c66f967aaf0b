"""``grpc_pool.insecure_channel`` / ``secure_channel``: grpcio's constructors, with
a pool behind the channel they return (which owns it)."""

from __future__ import annotations

from typing import Any

import grpc

from ._base.errors import InvalidConfig
from ._pool import Pool
from ._readers.poolchannel import PoolChannel

__all__ = ["insecure_channel", "secure_channel"]


def _owning(
    constructor: str, instead: str, target: str, pool_options: dict[str, Any], **given: Any
) -> PoolChannel:
    """A PoolChannel over a new pool it owns; ``given``: what the constructor sets itself."""
    for name in ("insecure", "credentials"):
        if name in pool_options:
            raise InvalidConfig(
                f"{name}={pool_options[name]!r} is not allowed: {constructor}() sets it; {instead}"
            )
    pool = Pool(target, **given, **pool_options)
    return PoolChannel(pool._reader, pool, owns_pool=True)


def insecure_channel(
    target: str,
    options: Any = None,
    compression: grpc.Compression | None = None,
    **pool_options: Any,
) -> PoolChannel:
    """``grpc.insecure_channel`` with a pool behind it: the same positional
    signature, plus any ``PoolConfig`` field as a keyword (``size=4``...).

    The returned ``PoolChannel`` owns a new pool (``.pool``); its ``close()`` and
    ``with`` exit close that pool.
    """
    return _owning(
        "insecure_channel",
        "use secure_channel() for TLS",
        target,
        pool_options,
        insecure=True,
        options=tuple(options or ()),
        compression=compression,
    )


def secure_channel(
    target: str,
    credentials: grpc.ChannelCredentials,
    options: Any = None,
    compression: grpc.Compression | None = None,
    **pool_options: Any,
) -> PoolChannel:
    """``grpc.secure_channel`` with a pool behind it: the same positional
    signature, plus any ``PoolConfig`` field as a keyword (``size=4``...).

    The returned ``PoolChannel`` owns a new pool (``.pool``); its ``close()`` and
    ``with`` exit close that pool.
    """
    return _owning(
        "secure_channel",
        "pass the credentials as its second argument",
        target,
        pool_options,
        credentials=credentials,
        options=tuple(options or ()),
        compression=compression,
    )
