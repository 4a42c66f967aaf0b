"""PoolConfig: every option of a pool, validated once at construction."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Union

import grpc

from ._errors import InvalidConfig

if TYPE_CHECKING:
    from ._strategy import Strategy

__all__ = ["STRATEGY_NAMES", "PoolConfig"]

STRATEGY_NAMES = ("round_robin", "random", "power_of_two")

ChannelOption = tuple[str, Any]
# A Union, not X | Y: this alias is evaluated at import time on Python 3.10.
Interceptor = Union[  # noqa: UP007
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
]


@dataclass(frozen=True, slots=True)
class PoolConfig:
    """Configuration of one pool. Frozen; every field is checked in ``__post_init__``.

    target: gRPC target string, e.g. ``"api.example.com:443"`` or ``"dns:///svc:50051"``.
    size: number of slots (one channel, one TCP connection each). Default 5.
    credentials: ``grpc.ChannelCredentials`` for TLS. Default None: system roots
        (``grpc.ssl_channel_credentials()``) unless ``insecure``.
    insecure: plaintext channels. Default False. Not allowed with ``credentials``.
    options: gRPC channel options passed through to every channel. Default ().
    interceptors: client interceptors, applied in order (the first is outermost).
    strategy: "round_robin" (default), "random", "power_of_two", or a ``Strategy``.
    connect_timeout: seconds a new channel may take to become READY. Default 20.0.
    backoff_initial: seconds before the first retry after a failure. Default 1.0.
    backoff_multiplier: growth factor per failure in a row. Default 1.6.
    backoff_jitter: relative randomization of each delay, 0..1. Default 0.2.
    backoff_max: cap of the delay in seconds. Default 120.0.
    retire_grace: seconds a channel taken out of rotation (scale down,
        reconnect) stays open for RPCs started on it. Default 5.0.
    track_in_flight: count RPCs per channel (for power_of_two, drain and
        stats). Default True.
    name: pool name for logs, thread names and repr. Default: "pool-<n>".
    """

    target: str
    size: int = 5
    credentials: grpc.ChannelCredentials | None = None
    insecure: bool = False
    options: Sequence[ChannelOption] = ()
    interceptors: Sequence[Interceptor] = ()
    strategy: str | Strategy = "round_robin"
    connect_timeout: float = 20.0
    backoff_initial: float = 1.0
    backoff_multiplier: float = 1.6
    backoff_jitter: float = 0.2
    backoff_max: float = 120.0
    retire_grace: float = 5.0
    track_in_flight: bool = True
    name: str | None = field(default=None)

    def __post_init__(self) -> None:
        if not isinstance(self.target, str) or not self.target.strip():
            raise _invalid("target", self.target, "a non-empty str such as 'host:port'")
        check_count("size", self.size)
        if self.credentials is not None and not isinstance(
            self.credentials, grpc.ChannelCredentials
        ):
            raise _invalid("credentials", self.credentials, "a grpc.ChannelCredentials or None")
        _check_bool("insecure", self.insecure)
        _check_bool("track_in_flight", self.track_in_flight)
        if self.insecure and self.credentials is not None:
            raise _invalid(
                "insecure", self.insecure, "False when credentials are given (choose one)"
            )
        object.__setattr__(self, "options", _check_options(self.options))
        object.__setattr__(self, "interceptors", _check_interceptors(self.interceptors))
        _check_strategy(self.strategy)
        check_seconds("connect_timeout", self.connect_timeout, allow_zero=False)
        check_seconds("backoff_initial", self.backoff_initial, allow_zero=False)
        _check_number("backoff_multiplier", self.backoff_multiplier, ">= 1.0", lambda v: v >= 1.0)
        _check_number("backoff_jitter", self.backoff_jitter, "0.0..1.0", lambda v: 0 <= v <= 1)
        check_seconds("backoff_max", self.backoff_max, allow_zero=False)
        if self.backoff_max < self.backoff_initial:
            raise _invalid(
                "backoff_max", self.backoff_max, f">= backoff_initial ({self.backoff_initial})"
            )
        check_seconds("retire_grace", self.retire_grace)
        if self.name is not None and (not isinstance(self.name, str) or not self.name.strip()):
            raise _invalid("name", self.name, "a non-empty str or None")


def _invalid(field_name: str, value: object, allowed: str) -> InvalidConfig:
    return InvalidConfig(f"{field_name}={value!r} is not allowed: expected {allowed}")


def _check_bool(field_name: str, value: object) -> None:
    if not isinstance(value, bool):
        raise _invalid(field_name, value, "True or False")


def check_count(field_name: str, value: object) -> int:
    """A positive int (bool excluded), else InvalidConfig."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _invalid(field_name, value, "an int >= 1")
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


def check_seconds(field_name: str, value: object, *, allow_zero: bool = True) -> float:
    """A finite, non-negative number of seconds (positive unless allow_zero)."""
    if allow_zero:
        return _check_number(field_name, value, ">= 0 (seconds)", lambda v: v >= 0)
    return _check_number(field_name, value, "> 0 (seconds)", lambda v: v > 0)


def _check_options(options: object) -> tuple[ChannelOption, ...]:
    if isinstance(options, (str, bytes)) or not isinstance(options, Sequence):
        raise _invalid("options", options, "a sequence of (str, value) pairs")
    for item in options:
        if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str)):
            raise _invalid("options", item, "each option a (str, value) pair")
    return tuple(options)


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
