"""``RetryPolicy``: the opt-in retry of RPCs across pooled channels, for
idempotent methods (``PoolConfig.retry``)."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import grpc

from .validate import _check_number, _invalid, check_seconds

__all__ = ["PUSHBACK_KEY", "RetryPolicy", "check_methods", "lists"]

# gRFC A6: the server's pushback, in trailing metadata; a negative or malformed
# value means "do not retry".
PUSHBACK_KEY = "grpc-retry-pushback-ms"
_DEFAULT_CODES = (grpc.StatusCode.UNAVAILABLE,)


@dataclass(frozen=True)
class RetryPolicy:
    """Retry the RPCs of the ``methods`` listed, on another ready channel when
    there is one, like gRPC's service-config ``retryPolicy`` (which retries on
    the same channel: for a pooled channel, the same connection).

    It covers every API (``pool.channel``, ``insecure_channel()``/``secure_channel()``,
    the channels ``get_channel()`` and ``stub()`` hand out) and every kind: blocking
    and ``with_call`` (the backoff waited in the caller's thread), ``future()`` (on
    a timer thread, never grpcio's), and streams until their first response
    message (a stream that got one is the caller's from then on). A client-streaming
    RPC is sent again with the requests it took, up to 32 of them.

    Only idempotent methods belong in ``methods``: an attempt that failed with one
    of ``codes`` may have run on the server.

    max_attempts: attempts in all, the first included (2..10, default 3).
    initial_backoff, max_backoff, backoff_multiplier: the delay before attempt n+1
    is min(initial_backoff * backoff_multiplier**(n-1), max_backoff) seconds
    (defaults 0.1, 1.0, 2.0), randomised by +-``jitter`` (0..1, default 0.2);
    never past the caller's deadline (no attempt then).
    codes: status codes retried (default UNAVAILABLE; CANCELLED allowed; not OK).
    methods: full method names ("/pkg.Service/Get") or service prefixes ending
    in "/" ("/pkg.Service/"); None: every method.
    The server's ``grpc-retry-pushback-ms`` trailing metadata replaces the delay;
    a negative or malformed value stops the retries (gRFC A6).
    """

    max_attempts: int = 3
    initial_backoff: float = 0.1
    max_backoff: float = 1.0
    backoff_multiplier: float = 2.0
    jitter: float = 0.2
    codes: Sequence[grpc.StatusCode] = _DEFAULT_CODES
    methods: Sequence[str] | None = None

    def __post_init__(self) -> None:
        attempts = self.max_attempts
        if isinstance(attempts, bool) or not isinstance(attempts, int) or not 2 <= attempts <= 10:
            raise _invalid("max_attempts", attempts, "an int 2..10")
        check_seconds("initial_backoff", self.initial_backoff, allow_zero=False)
        check_seconds("max_backoff", self.max_backoff, allow_zero=False)
        if self.max_backoff < self.initial_backoff:
            raise _invalid(
                "max_backoff", self.max_backoff, f">= initial_backoff ({self.initial_backoff})"
            )
        _check_number(
            "backoff_multiplier", self.backoff_multiplier, "1.0..100.0", lambda v: 1 <= v <= 100
        )
        _check_number("jitter", self.jitter, "0.0..1.0", lambda v: 0 <= v <= 1)
        codes = self.codes
        if isinstance(codes, grpc.StatusCode) or not isinstance(codes, Sequence) or not codes:
            raise _invalid("codes", codes, "a non-empty sequence of grpc.StatusCode")
        for code in codes:
            if not isinstance(code, grpc.StatusCode) or code is grpc.StatusCode.OK:
                raise _invalid("codes", codes, "grpc.StatusCode values other than OK")
        object.__setattr__(self, "codes", tuple(codes))
        if self.methods is not None:
            object.__setattr__(self, "methods", check_methods(self.methods))

    def applies(self, method: str) -> bool:
        """Whether ``method`` (a full method name) is one this policy retries."""
        methods = self.methods
        return methods is None or lists(methods, method)

    def delay(self, retry: int, rng: random.Random | None = None) -> float:
        """Seconds before retry number ``retry`` (1 for the second attempt)."""
        base = min(self.initial_backoff * self.backoff_multiplier ** (retry - 1), self.max_backoff)
        spread = (rng or random).uniform(-self.jitter, self.jitter)
        return max(0.0, base * (1 + spread))


def check_methods(methods: object) -> tuple[str, ...]:
    """A policy's ``methods`` as a tuple: full names ("/pkg.Service/Get") or service
    prefixes ending in "/" ("/pkg.Service/"); InvalidConfig naming ``methods`` else.
    One rule for ``RetryPolicy`` and ``HedgingPolicy``."""
    if isinstance(methods, str) or not isinstance(methods, Sequence) or not methods:
        raise _invalid("methods", methods, 'a non-empty sequence of "/pkg.Service/Method"')
    for method in methods:
        if not isinstance(method, str) or not method.startswith("/") or len(method) < 2:
            raise _invalid(
                "methods",
                methods,
                'full method names "/pkg.Service/Method" or prefixes "/pkg.Service/"',
            )
    return tuple(methods)


def lists(methods: Sequence[str], method: str) -> bool:
    """Whether ``method`` (a full name) is among ``methods`` (names or "/pkg.Service/")."""
    return any(method == m or (m.endswith("/") and method.startswith(m)) for m in methods)


def pushback(trailing: object) -> float | None:
    """The server's pushback in seconds; -1.0 for "do not retry" (negative or
    malformed); None when there is none."""
    if not trailing:
        return None
    try:
        values = [v for k, v in trailing if k == PUSHBACK_KEY]  # type: ignore[attr-defined]
    except (TypeError, ValueError):
        return None
    if not values:
        return None
    value = values[-1]
    text = value.decode() if isinstance(value, bytes) else str(value)
    if not text.isdigit():  # negative, empty or not a number
        return -1.0
    return int(text) / 1000.0
