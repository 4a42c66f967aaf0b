"""Checks of configuration values and method arguments, and the limits they enforce.

Each failure is an ``InvalidConfig`` naming the field, the value and what is allowed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Protocol, Union, runtime_checkable

import grpc

from .._base.errors import InvalidConfig
from .._base.redact import redact_target

__all__ = [
    "MAX_BACKOFF_MULTIPLIER",
    "MAX_COUNT",
    "MAX_SECONDS",
    "MAX_SIZE",
    "SPREAD_NAMES",
    "STRATEGY_NAMES",
    "ChannelOption",
    "Interceptor",
    "Strategy",
    "check_count",
    "check_seconds",
]

STRATEGY_NAMES = ("round_robin", "random", "power_of_two")
SPREAD_NAMES = ("balanced", "off")

# Longest duration anywhere (fields and method arguments): 2**31 - 1 milliseconds
# floored to whole seconds, about 24.8 days. gRPC takes keepalive times as int32
# milliseconds; threading.TIMEOUT_MAX (292 years on Linux, 49.7 days on Windows)
# and a gRPC deadline (now + timeout) hold far more.
MAX_SECONDS = 2_147_483.0
# Most slots a pool may have: each costs ~82 KB RSS, two OS threads (its worker
# and gRPC's connectivity poller) and one file descriptor.
MAX_SIZE = 1024
# Largest other count (rates, thresholds, limits): an int32, as gRPC's own.
MAX_COUNT = 2**31 - 1
MAX_BACKOFF_MULTIPLIER = 100.0
# Channel option values grpcio takes as integers: a C int.
_INT32 = (-(2**31), 2**31 - 1)

# Keys may also be bytes: grpcio takes them (its type stubs say str only).
ChannelOption = tuple[str, Any]
# A Union, not X | Y: this alias is evaluated at import time on Python 3.10.
Interceptor = Union[  # noqa: UP007
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
]


@runtime_checkable
class Strategy(Protocol):
    """Picks one channel from a non-empty snapshot of ready channels.

    ``pick`` runs on the caller's thread with no lock held and must be
    thread-safe; it gets the snapshot (a sequence of ``PooledChannel``) once and
    must return one of its items.
    """

    def pick(self, channels: Sequence[Any]) -> Any: ...


def _invalid(field_name: str, value: object, allowed: str) -> InvalidConfig:
    return InvalidConfig(f"{field_name}={value!r} is not allowed: expected {allowed}")


def _check_target(target: object) -> str | tuple[str, ...]:
    allowed = "a non-empty str such as 'host:port', or a non-empty list of them"
    if isinstance(target, str):
        if not target.strip():
            raise _invalid("target", target, allowed)
        return target
    if not isinstance(target, Sequence) or isinstance(target, bytes) or not target:
        raise _invalid("target", target, allowed)
    for item in target:
        if not isinstance(item, str) or not item.strip():
            shown = [redact_target(t) if isinstance(t, str) else t for t in target]
            raise _invalid("target", shown, allowed)
    return tuple(target)


def _check_bool(field_name: str, value: object) -> None:
    if not isinstance(value, bool):
        raise _invalid(field_name, value, "True or False")


def check_count(field_name: str, value: object, maximum: int = MAX_COUNT) -> int:
    """An int in 1..maximum (bool excluded), else InvalidConfig."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= maximum:
        raise _invalid(field_name, value, f"an int 1..{maximum}")
    return value


def _check_number(field_name: str, value: object, allowed: str, ok: Any) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or not ok(value)
    ):
        raise _invalid(field_name, value, f"a finite number {allowed}")
    return float(value)


def check_seconds(
    field_name: str, value: object, *, allow_zero: bool = True, maximum: float = MAX_SECONDS
) -> float:
    """A finite number of seconds in 0..maximum (0 excluded unless allow_zero).

    The maximum keeps every wait within ``threading.TIMEOUT_MAX``, gRPC's int32
    milliseconds and a gRPC deadline (see ``MAX_SECONDS``).
    """
    if allow_zero:
        return _check_number(
            field_name, value, f">= 0 and <= {maximum:.0f} (seconds)", lambda v: 0 <= v <= maximum
        )
    return _check_number(
        field_name, value, f"> 0 and <= {maximum:.0f} (seconds)", lambda v: 0 < v <= maximum
    )


def _check_options(options: object) -> tuple[ChannelOption, ...]:
    """What grpcio 1.85 takes and hands to gRPC core as it is: anything else fails
    every connect (TypeError, OverflowError) or, for an object with ``__int__``
    such as a float, becomes a raw pointer argument."""
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
        if isinstance(value, int):
            ok = _INT32[0] <= value <= _INT32[1]
        elif isinstance(value, (str, bytes)):
            ok = not _has_nul(value) and _encodes(value)
        else:
            ok = _is_grpc_pointer(value)
        if not ok:
            raise InvalidConfig(
                f"options value {value!r} for key {key!r} is not allowed: expected an int "
                f"{_INT32[0]}..{_INT32[1]}, a str or bytes (without NUL), or a "
                "grpc.experimental.session_cache.SSLSessionCache (for 'grpc.ssl_session_cache')"
            )
        checked.append((key, value))
    return tuple(checked)


def _is_grpc_pointer(value: object) -> bool:
    """grpcio's own pointer-valued option objects: an SSL session cache.

    grpcio hands any other object with ``__int__`` (a float, a Decimal, a user class)
    to gRPC core as a raw address: ignored at best, a SIGSEGV at worst, so only
    grpcio's wrapper is taken. It is not copied: every pooled channel gets the same
    cache, kept alive by the pool's config."""
    try:
        from grpc.experimental import session_cache
    except ImportError:  # pragma: no cover - present in every supported grpcio
        return False
    return isinstance(value, session_cache.SSLSessionCache)


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


def _check_interceptors(interceptors: object) -> tuple[Interceptor, ...]:
    if not isinstance(interceptors, Sequence) or isinstance(interceptors, (str, bytes)):
        raise _invalid("interceptors", interceptors, "a sequence of grpc client interceptors")
    kinds = (
        grpc.UnaryUnaryClientInterceptor,
        grpc.UnaryStreamClientInterceptor,
        grpc.StreamUnaryClientInterceptor,
        grpc.StreamStreamClientInterceptor,
    )
    for item in interceptors:
        if not isinstance(item, kinds):
            raise _invalid("interceptors", item, "grpc.*ClientInterceptor instances")
    return tuple(interceptors)


def _check_strategy(strategy: object) -> None:
    if isinstance(strategy, str):
        if strategy not in STRATEGY_NAMES:
            raise _invalid(
                "strategy", strategy, f"one of {', '.join(STRATEGY_NAMES)} or a Strategy"
            )
    elif not callable(getattr(strategy, "pick", None)):
        raise _invalid("strategy", strategy, f"one of {', '.join(STRATEGY_NAMES)} or a Strategy")
