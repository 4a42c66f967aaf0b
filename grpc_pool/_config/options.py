"""Channel options: what grpcio takes and passes on to gRPC core as meant.

One ``InvalidConfig`` per refused option, naming the key, the value, why and what
is allowed (``PoolConfig.options``).
"""

from __future__ import annotations

import importlib
import numbers
from collections.abc import Sequence
from typing import Any

from .._base.errors import InvalidConfig
from .validate import ChannelOption, _invalid

__all__ = ["check_options"]

# Channel option values grpcio takes as integers: a C int.
_INT32 = (-(2**31), 2**31 - 1)


def check_options(options: object) -> tuple[ChannelOption, ...]:
    """What grpcio 1.85 takes and hands to gRPC core (``_ChannelArg.c`` in its
    ``arguments.pyx.pxi``): an int, a str or bytes, or a pointer (any object with
    ``__int__``, as grpcio's own ``_channel_args_test`` passes); anything else fails
    every connect (TypeError, OverflowError). Refused besides: a pointer under a key
    gRPC core dereferences as one of its own objects (a crash), and a number that
    is not an int (grpcio would pass it as a pointer that core ignores)."""
    if isinstance(options, (str, bytes)) or not isinstance(options, Sequence):
        raise _invalid("options", options, "a sequence of (key, value) pairs")
    checked: list[Any] = []
    for item in options:
        if not (isinstance(item, (tuple, list)) and len(item) == 2):
            raise _invalid("options", item, "each option a (key, value) pair")
        key, value = item
        if not isinstance(key, (str, bytes)) or not key or _has_nul(key):
            raise InvalidConfig(
                f"options key {key!r} is not allowed: expected a non-empty str or bytes "
                "without NUL, such as 'grpc.max_receive_message_length'"
            )
        why = _bad_option_value(key if isinstance(key, str) else key.decode("latin-1"), value)
        if why is not None:
            raise InvalidConfig(
                f"options value {value!r} for key {key!r} is not allowed ({why}): expected "
                f"{_OPTION_VALUES}"
            )
        checked.append((key, value))
    return tuple(checked)


_OPTION_VALUES = (
    f"an int {_INT32[0]}..{_INT32[1]}, a str or bytes (without NUL), or a pointer: an "
    "object whose __int__ gives its address, as grpcio takes (under "
    "'grpc.ssl_session_cache' only a grpc.experimental.session_cache.SSLSessionCache)"
)
# Keys gRPC core reads as a pointer to an object of its own (grpc 1.85's
# channel_arg_names.h and its ChannelArgName()s): it dereferences what it is given,
# so any object but grpcio's session cache (under its key) would crash the process.
_CORE_POINTER_KEYS = frozenset(
    {
        "grpc.ssl_session_cache",
        "grpc.resource_quota",
        "grpc.socket_mutator",
        "grpc.socket_factory",
        "grpc.experimental.grpclb_channel_args",
        "grpc.experimental.event_engine",
        "grpc.client_channel_factory",
        "grpc.server_config_fetcher",
        "grpc.auth_context",
        "grpc.authorization_policy_provider",
        "grpc.fake_resolver.response_generator",
        "grpc.mitigation_engine_provider",
        "grpc.xds_resource_name_generator",
        "xds_client",
        "xds_config",
        "xds_dependency_manager",
        "xds_locality_name",
        "grpclb_token_and_client_stats",
    }
)
_CORE_POINTER_PREFIX = "grpc.internal."
# grpcio casts a pointer's int to uintptr_t: OverflowError outside this range.
_UINTPTR_MAX = 2**64 - 1


def _bad_option_value(key: str, value: object) -> str | None:
    """Why grpcio (or gRPC core) would refuse, ignore or crash on ``value`` under
    ``key``; None when it passes it on as meant."""
    if isinstance(value, int):  # bool included: 0/1
        return None if _INT32[0] <= value <= _INT32[1] else "beyond a C int"
    if isinstance(value, (str, bytes)):
        if _has_nul(value):
            return "a NUL character"
        return None if _encodes(value) else "not encodable as UTF-8"
    if _is_grpcio_arg(value):
        return None
    if isinstance(value, numbers.Number):
        # A float (a Decimal, a Fraction) has __int__: grpcio would pass int(value) as
        # a pointer, which gRPC core ignores for an int setting such as a keepalive.
        return f"a {type(value).__name__} is not an int; grpcio would pass it as a pointer"
    if not hasattr(value, "__int__"):
        return f"a {type(value).__name__} is neither an int, a str, bytes nor a pointer"
    try:
        address = int(value)
    except Exception as error:  # grpcio would raise it at every channel it builds
        return f"its __int__ raised {error!r}"
    if not 0 <= address <= _UINTPTR_MAX:
        return "its __int__ is not an address (0..2**64-1)"
    if key in _CORE_POINTER_KEYS or key.startswith(_CORE_POINTER_PREFIX):
        if key == "grpc.ssl_session_cache" and _is_session_cache(value):
            return None
        return f"gRPC core dereferences {key!r} as a pointer to its own object: a crash"
    return None


def _is_session_cache(value: object) -> bool:
    """grpcio's own pointer-valued option object: an SSL session cache. It is not
    copied: every pooled channel gets the same cache, kept alive by the pool's
    config (grpcio ties a pointer's life to its Python object's)."""
    try:
        from grpc.experimental import session_cache
    except ImportError:  # pragma: no cover - present in every supported grpcio
        return False
    return isinstance(value, session_cache.SSLSessionCache)


def _is_grpcio_arg(value: object) -> bool:
    """A channel argument grpcio built itself (its ``_GrpcArgWrapper``, alone or in
    the tuple form ``_wrap_grpc_arg`` returns), which it takes as it is."""
    try:  # private to grpcio (and untyped): looked up, not imported by name
        wrapper = importlib.import_module("grpc._cython.cygrpc")._GrpcArgWrapper
    except (ImportError, AttributeError):  # pragma: no cover
        return False
    if isinstance(value, tuple) and len(value) == 2:
        return value[0] == "grpc.python._cygrpc._GrpcArgWrapper" and isinstance(value[1], wrapper)
    return isinstance(value, wrapper)


def _encodes(text: str | bytes) -> bool:
    # grpcio encodes str values as UTF-8: a lone surrogate fails every connect.
    if isinstance(text, bytes):
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _has_nul(text: str | bytes) -> bool:
    # gRPC core reads keys and string values as C strings: a NUL would cut them short.
    if isinstance(text, str):
        return "\0" in text
    return b"\0" in text
