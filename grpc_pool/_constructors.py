"""``grpc_pool.insecure_channel`` / ``secure_channel``: grpcio's constructors, with
a pool behind the channel they return (which owns it)."""

from __future__ import annotations

from collections.abc import Iterable
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
    options = given["options"]
    if isinstance(options, int) and not isinstance(options, bool):
        # insecure_channel(target, 4): grpcio's second positional argument is options.
        raise InvalidConfig(
            f"options={options!r} is not allowed: {constructor}()'s "
            f"{'second' if constructor == 'insecure_channel' else 'third'} positional "
            "argument is grpcio's options, a sequence of (key, value) pairs; for the "
            f"number of channels pass size={options!r}"
        )
    if options is None:
        given["options"] = ()
    elif isinstance(options, Iterable) and not isinstance(options, (str, bytes)):
        given["options"] = tuple(options)  # PoolConfig checks each pair
    pool = Pool(target, **given, **pool_options)
    return PoolChannel(pool._reader, pool, pool._retrier, owns_pool=True)


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
        "it is always True there: use secure_channel() for TLS",
        target,
        pool_options,
        insecure=True,
        options=options,
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
        "secure_channel() always uses TLS (insecure is always False there) with the "
        "credentials given as its second argument; use insecure_channel() for plaintext",
        target,
        pool_options,
        credentials=credentials,
        options=options,
        compression=compression,
    )
