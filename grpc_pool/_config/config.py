"""PoolConfig: every option of a pool, validated once at construction."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import grpc

from .._base.errors import InvalidConfig
from .._base.redact import redact_target, redact_value, remember, secrets_of
from .env import config_from_env, config_from_mapping
from .hedging import HedgingPolicy
from .options import check_options
from .outliers import DEFAULT_EJECTION, OutlierEjection
from .retry import RetryPolicy
from .validate import (
    MAX_BACKOFF_MULTIPLIER,
    MAX_COUNT,
    MAX_SECONDS,
    MAX_SIZE,
    SPREAD_NAMES,
    STRATEGY_NAMES,
    ChannelOption,
    Interceptor,
    Strategy,
    _check_bool,
    _check_interceptors,
    _check_number,
    _check_strategy,
    _check_target,
    _invalid,
    check_count,
    check_seconds,
)

__all__ = [
    "MAX_COUNT",
    "MAX_SECONDS",
    "MAX_SIZE",
    "SPREAD_NAMES",
    "STRATEGY_NAMES",
    "PoolConfig",
    "check_count",
    "check_seconds",
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
    strategy: "round_robin" (default), "random", "power_of_two", "peak_ewma", or a
        ``Strategy``.
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
    listeners: callables given every ``PoolEvent`` (see ``Pool.add_listener``). Default ().
    status_interval: seconds between periodic ``StatusEvent``s; 0 turns them off. Default 5.0.
    telemetry_sample_rate: ``GetChannelEvent`` sampling: 0 never (default), 1 every
        call, N about one call in N. Only paid while a listener is registered.
    suppress_connection_errors: log connection failures and losses at DEBUG only,
        for servers that close connections on purpose. Default False.
    keepalive_time: seconds between HTTP/2 keepalive pings while RPCs are active
        (a dead or black-holed connection fails its RPCs instead of hanging);
        None leaves gRPC's default (off). Default 30.0. A value in ``options``
        (``grpc.keepalive_time_ms``) wins.
    keepalive_timeout: seconds to wait for a ping's answer. Default 10.0.
    keepalive_without_calls: also ping idle connections. Default False: a
        default gRPC server answers pings more often than every 5 minutes
        without calls with GOAWAY "too_many_pings". Use health checks instead.
    health_check_interval: seconds between ``grpc.health.v1.Health/Check``
        calls over each pooled channel. An answer other than SERVING takes the
        channel out of rotation, keeping its connection, until a check answers
        SERVING; a check without an answer (timeout, UNAVAILABLE) reconnects it;
        no Health service (UNIMPLEMENTED) counts as healthy. 0 (default) is off.
    health_check_timeout: seconds a health check may take. Default 5.0.
    health_check_service: service name sent in the check. Default "" (the server).
    max_connection_age: replace each channel after this many seconds (each picks
        a deadline uniform in [0.8, 1.0] of it): the new channel connects (and is
        primed/health-checked) before it replaces the old one, which then
        drains; one slot at a time. None (default) is off.
    primer: called with every new channel before it is published (warm-up,
        e.g. an RPC that loads caches); an exception fails that connection
        attempt. Default None.
    autoscale: resize every ``autoscale_interval`` seconds (default 60.0) from the
        peak RPCs in flight since the last check: keep between
        ceil(peak / max_rpcs_per_channel) (default 50) and
        ceil(peak / min_rpcs_per_channel) (default 10) channels, within
        [min_size (default 1), max_size (default: size)], moving at most
        max_resize_delta (default 2) per interval. Default False.
    stream_limit: the server's concurrent-stream limit per connection, for the
        warning when the pool is at max_size and channels carry 80% of it (of K x it
        with gRFC A105 connectionScaling K in ``options``, grpcio >= 1.84). Default 100.
    eject_after_unavailable: reconnect a channel after this many RPCs in a row
        failed with UNAVAILABLE, without waiting for the connectivity watcher.
        0 (default) is off; needs ``track_in_flight``.
    compression: ``grpc.Compression`` for every pooled channel (grpcio's
        ``compression`` argument of ``insecure_channel``). Default None: grpcio's.
    fork_drain_timeout: seconds ``os.fork()`` waits, with new RPCs through the
        pool held, for RPCs in flight to end (a thread inside gRPC at fork time
        can crash the child). Default 0.5; 0 holds new RPCs but does not wait.
    resolver: ``resolver(target) -> Sequence[str]`` of ``host:port`` addresses (service
        discovery), called on the pool's resolver thread. Default None: ``dns:///``
        targets and bare ``host:port`` by ``socket.getaddrinfo``,
        ``dns://server[:port]/name`` asked of that DNS server (the ``dns`` extra, TTL
        honoured), ``ipv4:``/``ipv6:`` lists parsed; other schemes (``unix:``,
        ``xds:``) are not spread (``PoolStats.spread_off_reason``).
    resolve_interval: seconds between resolutions; 0 resolves once, at start.
        Also resolved again soon after a connection fails. Default 30.0.
    spread: "balanced" (default): each slot connects to one address of the target,
        every address gets floor(N/K) or ceil(N/K) of the N slots, and slots
        follow the addresses as they change. "off": the target goes to grpcio as
        given. A list of targets is never spread (slot i takes targets[i % len]).
    transparent_retry: RPCs that failed on a pooled channel before reaching any
        server (a failed pick: "failed to connect to all addresses") are sent
        again on another ready channel, at most 3 times, within the RPC's
        timeout: every kind (blocking, ``with_call``, ``future``, the streams),
        through ``pool.channel``, ``insecure_channel()`` and the channels
        ``get_channel()``/``stub()`` hand out. Default True (docs/reliability.md).
    retry: a ``RetryPolicy`` for idempotent methods (opt-in; default None), for
        the same APIs and kinds.
    fleet_index: this pool's index in its fleet of pools calling the same service
        (0, 1, 2, ...: a StatefulSet pod's ordinal times the pools per pod plus the
        pool's number there): deterministic subsetting, every backend within one
        connection of the fleet's mean (docs/scaling.md). Default None: random
        subsetting by rendezvous hashing (gRFC A68). Needs ``spread="balanced"``.
    outlier_ejection: an ``OutlierEjection``: a backend whose calls fail with
        server-side errors (INTERNAL, UNKNOWN, DATA_LOSS, UNAVAILABLE after
        reaching it) leaves the pick for a while. Default ``OutlierEjection()``
        (on); None is off. Needs ``track_in_flight`` (off without it).
    hedging: a ``HedgingPolicy`` for idempotent methods (opt-in; default None):
        unary and server-streaming RPCs still unanswered after a delay are sent
        to another channel too, the first answer wins (docs/reliability.md).

    Bounds (each enforced with ``InvalidConfig`` naming the field, the value and
    the range; NaN, infinities, bools and non-numbers are refused everywhere):

    - every duration, here and in method arguments (``get_channel`` and
      ``wait_ready`` timeout, ``close`` grace): at most 2,147,483 s (about
      24.8 days), the most whole seconds gRPC's int32 milliseconds hold
      (keepalive), well within ``threading.TIMEOUT_MAX`` and a gRPC deadline;
    - size, min_size, max_size and any size reached by ``resize``/``scale_up``:
      1..1,024 (each slot costs ~82 KB RSS, two OS threads and a file
      descriptor: more would exhaust threads before it helped);
    - other counts (telemetry_sample_rate, eject_after_unavailable,
      *_rpcs_per_channel, stream_limit): at most 2**31 - 1; max_resize_delta at
      most 1,024; backoff_multiplier 1.0..100.0;
    - options: (key, value) pairs with the values grpcio takes: an int within int32,
      a str or bytes without NUL, or a pointer object (``_config/options.py``).
    """

    target: str | Sequence[str]
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
    listeners: Sequence[Callable[[Any], None]] = ()
    status_interval: float = 5.0
    telemetry_sample_rate: int = 0
    suppress_connection_errors: bool = False
    keepalive_time: float | None = 30.0
    keepalive_timeout: float = 10.0
    keepalive_without_calls: bool = False
    health_check_interval: float = 0.0
    health_check_timeout: float = 5.0
    health_check_service: str = ""
    eject_after_unavailable: int = 0
    max_connection_age: float | None = None
    primer: Callable[[Any], None] | None = None
    autoscale: bool = False
    autoscale_interval: float = 60.0
    min_size: int = 1
    max_size: int | None = None
    min_rpcs_per_channel: int = 10
    max_rpcs_per_channel: int = 50
    max_resize_delta: int = 2
    stream_limit: int = 100
    compression: grpc.Compression | None = None
    fork_drain_timeout: float = 0.5
    resolver: Callable[[str], Sequence[str]] | None = None
    resolve_interval: float = 30.0
    spread: str = "balanced"
    transparent_retry: bool = True
    retry: RetryPolicy | None = None
    fleet_index: int | None = None
    outlier_ejection: OutlierEjection | None = DEFAULT_EJECTION
    hedging: HedgingPolicy | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "target", _check_target(self.target, self.resolver))
        remember(secrets_of(self.targets))  # the log filter hides them from now on
        check_count("size", self.size, MAX_SIZE)
        if self.credentials is not None and not isinstance(
            self.credentials, grpc.ChannelCredentials
        ):
            # Never echo it: a token passed here by mistake is a secret.
            raise InvalidConfig(
                f"credentials={redact_value(self.credentials)} is not allowed: expected a "
                "grpc.ChannelCredentials or None (for a token, use "
                "grpc.access_token_call_credentials with grpc.composite_channel_credentials)"
            )
        _check_bool("insecure", self.insecure)
        _check_bool("track_in_flight", self.track_in_flight)
        _check_bool("transparent_retry", self.transparent_retry)
        policies = (("retry", RetryPolicy), ("outlier_ejection", OutlierEjection))
        for name, kind in (*policies, ("hedging", HedgingPolicy)):
            if (value := getattr(self, name)) is not None and not isinstance(value, kind):
                raise _invalid(name, value, f"a grpc_pool.{kind.__name__} or None")
        if self.insecure and self.credentials is not None:
            raise _invalid(
                "insecure", self.insecure, "False when credentials are given (choose one)"
            )
        object.__setattr__(self, "options", check_options(self.options))
        object.__setattr__(self, "interceptors", _check_interceptors(self.interceptors))
        _check_strategy(self.strategy)
        check_seconds("connect_timeout", self.connect_timeout, allow_zero=False)
        check_seconds("backoff_initial", self.backoff_initial, allow_zero=False)
        _check_number(
            "backoff_multiplier",
            self.backoff_multiplier,
            f"1.0..{MAX_BACKOFF_MULTIPLIER:g}",
            lambda v: 1.0 <= v <= MAX_BACKOFF_MULTIPLIER,
        )
        _check_number("backoff_jitter", self.backoff_jitter, "0.0..1.0", lambda v: 0 <= v <= 1)
        check_seconds("backoff_max", self.backoff_max, allow_zero=False)
        if self.backoff_max < self.backoff_initial:
            raise _invalid(
                "backoff_max", self.backoff_max, f">= backoff_initial ({self.backoff_initial})"
            )
        check_seconds("retire_grace", self.retire_grace)
        check_seconds("status_interval", self.status_interval)
        _check_bool("suppress_connection_errors", self.suppress_connection_errors)
        rate = self.telemetry_sample_rate
        if isinstance(rate, bool) or not isinstance(rate, int) or not 0 <= rate <= MAX_COUNT:
            raise _invalid(
                "telemetry_sample_rate", rate, f"an int 0..{MAX_COUNT} (0 never, N one in N)"
            )
        listeners = self.listeners
        if isinstance(listeners, (str, bytes)) or not isinstance(listeners, Sequence):
            raise _invalid("listeners", listeners, "a sequence of callables")
        for listener in listeners:
            if not callable(listener):
                raise _invalid("listeners", listener, "each listener a callable")
        object.__setattr__(self, "listeners", tuple(listeners))
        if self.keepalive_time is not None:
            check_seconds("keepalive_time", self.keepalive_time, allow_zero=False)
        check_seconds("keepalive_timeout", self.keepalive_timeout, allow_zero=False)
        _check_bool("keepalive_without_calls", self.keepalive_without_calls)
        check_seconds("health_check_interval", self.health_check_interval)
        check_seconds("health_check_timeout", self.health_check_timeout, allow_zero=False)
        if not isinstance(self.health_check_service, str):
            raise _invalid("health_check_service", self.health_check_service, "a str")
        eject = self.eject_after_unavailable
        if isinstance(eject, bool) or not isinstance(eject, int) or not 0 <= eject <= MAX_COUNT:
            raise _invalid("eject_after_unavailable", eject, f"an int 0..{MAX_COUNT} (0 is off)")
        if eject and not self.track_in_flight:
            raise _invalid(
                "eject_after_unavailable", eject, "0 when track_in_flight is False (it counts RPCs)"
            )
        if self.max_connection_age is not None:
            check_seconds("max_connection_age", self.max_connection_age, allow_zero=False)
        if self.primer is not None and not callable(self.primer):
            raise _invalid("primer", self.primer, "a callable taking the new channel, or None")
        if self.name is not None and (not isinstance(self.name, str) or not self.name.strip()):
            raise _invalid("name", self.name, "a non-empty str or None")
        check_seconds("fork_drain_timeout", self.fork_drain_timeout)
        if self.compression is not None and not isinstance(self.compression, grpc.Compression):
            raise _invalid(
                "compression", self.compression, "a grpc.Compression (NoCompression, Deflate, Gzip)"
            )
        self._check_autoscale()
        if self.resolver is not None and not callable(self.resolver):
            raise _invalid("resolver", self.resolver, "a callable(target) -> addresses, or None")
        check_seconds("resolve_interval", self.resolve_interval)
        if self.spread not in SPREAD_NAMES:
            raise _invalid("spread", self.spread, f"one of {', '.join(SPREAD_NAMES)}")
        index = self.fleet_index
        if index is not None:
            if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index <= MAX_COUNT:
                raise _invalid("fleet_index", index, f"an int 0..{MAX_COUNT}, or None")
            if self.spread == "off":
                raise _invalid("fleet_index", index, "None when spread is 'off' (nothing to place)")

    def _check_autoscale(self) -> None:
        _check_bool("autoscale", self.autoscale)
        check_seconds("autoscale_interval", self.autoscale_interval, allow_zero=False)
        check_count("min_size", self.min_size, MAX_SIZE)
        if self.max_size is not None:
            check_count("max_size", self.max_size, MAX_SIZE)
        high = self.max_size if self.max_size is not None else self.size
        if not self.min_size <= self.size <= high:
            raise _invalid(
                "size", self.size, f"min_size ({self.min_size}) <= size <= max_size ({high})"
            )
        check_count("min_rpcs_per_channel", self.min_rpcs_per_channel)
        check_count("max_rpcs_per_channel", self.max_rpcs_per_channel)
        if self.min_rpcs_per_channel >= self.max_rpcs_per_channel:
            raise _invalid(
                "min_rpcs_per_channel",
                self.min_rpcs_per_channel,
                f"< max_rpcs_per_channel ({self.max_rpcs_per_channel}): the gap is the hysteresis",
            )
        check_count("max_resize_delta", self.max_resize_delta, MAX_SIZE)
        check_count("stream_limit", self.stream_limit)
        if self.autoscale and not self.track_in_flight:
            raise _invalid(
                "autoscale", True, "False when track_in_flight is False (it counts RPCs)"
            )

    @property
    def targets(self) -> tuple[str, ...]:
        """The targets as a tuple; slot i connects to targets[i % len(targets)]."""
        return (self.target,) if isinstance(self.target, str) else tuple(self.target)

    @property
    def target_label(self) -> str:
        """The target(s) as one string, for logs, reprs and metric labels.

        User-info is redacted (``user:***@host``): this is for display only.
        """
        return ",".join(redact_target(target) for target in self.targets)

    def __repr__(self) -> str:
        # The generated repr would print the target's user-info.
        values = ", ".join(
            f"target={self._redacted_target()!r}"
            if f.name == "target"
            else f"{f.name}={getattr(self, f.name)!r}"
            for f in fields(self)
        )
        return f"PoolConfig({values})"

    def _redacted_target(self) -> str | tuple[str, ...]:
        if isinstance(self.target, str):
            return redact_target(self.target)
        return tuple(redact_target(target) for target in self.target)

    def target_of(self, slot: int) -> str:
        targets = self.targets
        return targets[slot % len(targets)]

    @classmethod
    def from_mapping(cls, settings: Mapping[str, Any]) -> PoolConfig:
        """A config from a mapping of field names to values.

        For settings files, e.g. Django's
        ``GRPC_POOL = {"target": "orders:50051", "size": 4, "insecure": True}``.
        An unknown key raises ``InvalidConfig`` naming it and listing the allowed
        ones; values are checked as by the constructor.
        """
        config: PoolConfig = config_from_mapping(cls, settings)
        return config

    @classmethod
    def from_env(
        cls, prefix: str = "GRPC_POOL_", environ: Mapping[str, str] | None = None
    ) -> PoolConfig:
        """A config from environment variables: ``<prefix><FIELD>`` per field.

        Every field typed str, int, float or bool (alone, or with None or other
        types) is read: ``GRPC_POOL_TARGET``, ``GRPC_POOL_SIZE``,
        ``GRPC_POOL_INSECURE``, ``GRPC_POOL_CONNECT_TIMEOUT``, ... and
        ``GRPC_POOL_STRATEGY`` as a strategy name. Fields that have no text form
        (credentials, options, interceptors, a strategy object) are never read;
        set them with ``dataclasses.replace(config, ...)``.
        Bools: 1/0, true/false, yes/no, on/off (any case). An empty value of a
        field that may be None means None. A variable that is not set keeps the
        field's default; an unset required one (the target), an unparsable value,
        or a variable with the prefix that names no readable field raises
        ``InvalidConfig`` naming the variable, the value and what is allowed.
        environ: the variables to read; default ``os.environ``.
        """
        config: PoolConfig = config_from_env(cls, prefix, environ)
        return config
