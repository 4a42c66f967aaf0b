"""Checks of configuration values and method arguments, and the limits they enforce.

Each failure is an ``InvalidConfig`` naming the field, the value and what is allowed.
"""

from __future__ import annotations

import contextlib
import ipaddress
import math
import re
from collections.abc import Sequence
from typing import Any, Protocol, Union, runtime_checkable

import grpc

from .._base.errors import InvalidConfig
from .._base.redact import redact_target, redact_text, secrets_of

__all__ = [
    "MAX_BACKOFF_MULTIPLIER",
    "MAX_COUNT",
    "MAX_SECONDS",
    "MAX_SIZE",
    "SPREAD_NAMES",
    "STRATEGY_NAMES",
    "TARGET_FORMS",
    "ChannelOption",
    "Interceptor",
    "Strategy",
    "check_count",
    "check_seconds",
    "check_target",
]

STRATEGY_NAMES = ("round_robin", "random", "power_of_two", "peak_ewma")
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
    must return one of its items. Each channel's ``signals`` (a read-only
    ``ChannelSignals``: latency, in flight, outcomes) are what ``peak_ewma`` reads.
    """

    def pick(self, channels: Sequence[Any]) -> Any: ...


def _invalid(field_name: str, value: object, allowed: str) -> InvalidConfig:
    return InvalidConfig(f"{field_name}={value!r} is not allowed: expected {allowed}")


# -- targets ------------------------------------------------------------------------------

TARGET_FORMS = (
    "'host[:port]' or '[ipv6]:port' (port 1..65535; no port means 443), "
    "'dns:[//dns-server/]host[:port]', 'ipv4:addr:port[,addr:port...]', "
    "'ipv6:[addr]:port[,[addr]:port...]', 'unix:path', 'unix:///absolute/path', "
    "'unix-abstract:name', 'xds:[//authority]/name', 'google-c2p:///name'"
)
_URI_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):(.*)$", re.DOTALL)
_LABEL = re.compile(r"^(?!-)[A-Za-z0-9_-]{1,63}(?<!-)$")
# Schemes whose rest is a path or a name in which '@' is just a character.
_PATH_SCHEMES = ("unix", "unix-abstract", "xds", "google-c2p")
_SUN_PATH_MAX = 107  # sizeof(sockaddr_un.sun_path) - 1 on Linux
# Registered in grpcio 1.85's wheel but not for users: 'fake' (a test resolver that
# never resolves), 'google-c2p-experimental' (an old alias); 'vsock' is not
# registered in the wheel (grpcio sends 'vsock:1:2' to DNS).
_NOT_FOR_USERS = ("fake", "vsock", "google-c2p-experimental")


def _bad_target(target: str, why: str) -> InvalidConfig:
    message = f"target={redact_target(target)!r} is not allowed ({why}): expected {TARGET_FORMS}"
    return InvalidConfig(redact_text(message, secrets_of([target])))


def _port(target: str, port: str) -> None:
    # grpcio takes '' as 443 and wraps ports mod 65536 (99999 -> 34463, -1 -> 65535).
    if not (port.isascii() and port.isdigit()) or not 1 <= int(port) <= 65535:
        raise _bad_target(target, f"port {port!r} is not 1..65535")


def _hostname(target: str, host: str) -> None:
    with contextlib.suppress(ValueError):
        ipaddress.IPv4Address(host)
        return
    name = host[:-1] if host.endswith(".") else host
    labels = name.split(".")
    if not name or len(name) > 253 or not all(_LABEL.match(label) for label in labels):
        raise _bad_target(target, f"host {host!r} is not a DNS name or IP address")
    if all(label.isdigit() for label in labels):  # '1.2.3.4.5' looks numeric, is no IPv4
        raise _bad_target(target, f"host {host!r} is not an IPv4 address")


def _host_port(target: str, text: str, *, need_port: bool = False, family: str = "") -> None:
    """'host', 'host:port', '[v6]', '[v6]:port' or a bare IPv6 literal (no port);
    ``family`` 'ipv4'/'ipv6': an IP literal of that family only."""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise _bad_target(target, "unclosed '['")
        host, rest = text[1:end], text[end + 1 :]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise _bad_target(target, f"{host!r} in brackets is not an IPv6 address") from None
        if family == "ipv4":
            raise _bad_target(target, "ipv4: takes IPv4 addresses")
        if not rest:
            if need_port:
                raise _bad_target(target, "no port")
            return
        if not rest.startswith(":"):
            raise _bad_target(target, f"unexpected {rest!r} after ']'")
        _port(target, rest[1:])
        return
    if text.count(":") > 1:  # a bare IPv6 literal: grpcio takes it as a host, port 443
        try:
            ipaddress.IPv6Address(text)
        except ValueError:
            raise _bad_target(target, "more than one ':' outside [ ]") from None
        if need_port or family == "ipv4":
            raise _bad_target(target, "an IPv6 address with a port goes in [ ]")
        return
    host, colon, port = text.partition(":")
    if family == "ipv4":
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            raise _bad_target(target, f"{host!r} is not an IPv4 address") from None
    elif family == "ipv6":
        raise _bad_target(target, "ipv6: takes [addr]:port")
    else:
        _hostname(target, host)
    if colon:
        _port(target, port)
    elif need_port:
        raise _bad_target(target, "no port")


def check_target(target: object) -> str:
    """One channel target as grpcio 1.85 resolves it, else InvalidConfig naming
    ``target``, the value (user-info redacted) and the allowed forms.

    Stricter than grpcio where grpcio silently does something else: a port out of
    1..65535 (grpcio wraps it mod 65536), an empty port (443), whitespace, a
    query, fragment, percent-encoding or trailing comma, an unknown scheme
    (grpcio hands ``http://h:1`` to DNS, which fails at every connect), user-info
    (``user:pw@host:1``: grpcio resolves ``user:pw@host`` as a host name, which
    fails at every connect; shown redacted).
    """
    if not isinstance(target, str) or not target:
        raise _invalid("target", target, f"a non-empty str: {TARGET_FORMS}")
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in target):
        raise _bad_target(target, "whitespace or control character")
    match = _URI_SCHEME.match(target)
    scheme = match.group(1).lower() if match else ""  # grpc core lower-cases schemes
    rest = match.group(2) if match else ""
    if "@" in target and scheme not in _PATH_SCHEMES:
        # Measured (grpcio 1.60, 1.85): 'user:pw@host:1' and 'dns:///user@host:1' are
        # looked up as the host name 'user:pw@host' ("Misformatted domain name"), a DNS
        # server 'dns://user@h/' is an unparsable authority, 'ipv4:user@...' an invalid
        # URI: every connect fails. Credentials go in credentials= or call credentials.
        raise _bad_target(
            target,
            "user-info before '@' is not used by grpcio: it resolves it as part of the "
            "host name and fails every connect; pass credentials with credentials=",
        )
    if scheme == "dns":
        name = rest
        if rest.startswith("//"):
            authority, slash, name = rest[2:].partition("/")
            if not slash:
                raise _bad_target(target, "'dns://' needs '/name' after the DNS server")
            if authority:  # the DNS server grpcio asks, e.g. 'dns://8.8.8.8:53/name'
                _host_port(target, authority)
        if not name:
            raise _bad_target(target, "no name after 'dns:'")
        _host_port(target, name)
    elif scheme in ("ipv4", "ipv6"):
        body = rest[3:] if rest.startswith("///") else rest
        if not body:
            raise _bad_target(target, f"no address after '{scheme}:'")
        for part in body.split(","):
            if not part:
                raise _bad_target(target, "empty address in the list")
            _host_port(target, part, need_port=True, family=scheme)
    elif scheme == "unix":
        if rest.startswith("//") and not rest.startswith("///"):
            raise _bad_target(target, "unix:// takes no authority: use unix:///absolute/path")
        path = rest[2:] if rest.startswith("///") else rest
        if not path or len(path.encode()) > _SUN_PATH_MAX:
            raise _bad_target(target, f"unix socket path must be 1..{_SUN_PATH_MAX} bytes")
    elif scheme == "unix-abstract":
        if not rest or len(rest.encode()) > _SUN_PATH_MAX:
            raise _bad_target(target, f"abstract socket name must be 1..{_SUN_PATH_MAX} bytes")
    elif scheme in ("xds", "google-c2p"):
        name = rest[2:].partition("/")[2] if rest.startswith("//") else rest
        if not name.strip("/"):
            raise _bad_target(target, f"no service name after '{scheme}:'")
    elif match and (rest.startswith("//") or scheme in _NOT_FOR_USERS):
        # 'http://h:1', 'dsn:///x:1': grpcio prefixes dns:/// and fails to resolve them.
        raise _bad_target(target, f"unknown scheme {match.group(1)!r}")
    else:  # no scheme grpcio knows: it resolves dns:///<target>
        _host_port(target, target)
    return target


def _check_target(target: object, resolver: object = None) -> str | tuple[str, ...]:
    """A target or a non-empty list of them, each checked by ``check_target``; with a
    ``resolver`` the scheme is the user's, so only a non-blank str is asked for."""
    one = check_target if resolver is None else _check_resolved_name
    if isinstance(target, str):
        return one(target)
    if not isinstance(target, Sequence) or isinstance(target, bytes) or not target:
        allowed = "a non-empty str such as 'host:port', or a non-empty list of them"
        raise _invalid("target", target, allowed)
    for i, item in enumerate(target):
        try:
            one(item)
        except InvalidConfig as error:
            shown = [redact_target(t) if isinstance(t, str) else t for t in target]
            raise InvalidConfig(f"target={shown!r} is not allowed: entry {i}: {error}") from None
    return tuple(target)


def _check_resolved_name(target: object) -> str:
    if not isinstance(target, str) or not target.strip():
        raise _invalid("target", target, "a non-empty str the resolver takes")
    return target


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
