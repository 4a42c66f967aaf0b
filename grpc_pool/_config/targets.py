"""Targets: how a target string names its backends, and how a config's target spreads.

Pure functions of the configuration (no I/O): the resolver thread, the writer's
spreader and the CLI use them.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

from .config import PoolConfig

__all__ = [
    "AUTHORITY",
    "NEEDS_DNS_EXTRA",
    "Plan",
    "channel_config",
    "dial_target",
    "dns_server_of",
    "has_dnspython",
    "ip_literal",
    "join_host_port",
    "literal_list",
    "name_of",
    "no_port",
    "plan",
    "split_host_port",
    "spread_off_reason",
    "undial",
]

AUTHORITY = "grpc.default_authority"
# gRPC's default port for a target without one.
_DEFAULT_PORT = "443"
# Schemes grpcio resolves by itself and the pool cannot (or must not) spread.
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):(.*)$", re.DOTALL)
_DNS_PORT = "53"
NEEDS_DNS_EXTRA = "dns server in target needs the [dns] extra (pip install grpc-pool[dns])"


@dataclass(frozen=True, slots=True)
class Plan:
    """How one target spreads: the name channels to an address keep as authority
    (None: each address is its own authority), and the addresses when known
    without I/O (``ipv4:``/``ipv6:`` lists, an IP literal) else None."""

    target: str
    authority: str | None
    static: tuple[str, ...] | None


def split_host_port(address: str, default_port: str = _DEFAULT_PORT) -> tuple[str, str]:
    """``"host:port"``, ``"[v6]:port"``, ``"host"`` or a bare IPv6 literal -> (host, port)."""
    if address.startswith("["):
        end = address.find("]")
        if end < 0:
            raise ValueError(f"unclosed '[' in {address!r}")
        rest = address[end + 1 :]
        if rest and not rest.startswith(":"):
            raise ValueError(f"bad address {address!r}")
        return address[1:end], rest[1:] or default_port
    if address.count(":") == 1:
        host, port = address.split(":")
        return host, port or default_port
    return address, default_port  # no port, or a bare IPv6 literal


def join_host_port(host: str, port: str) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def dial_target(address: str) -> str:
    """The grpcio target of one address: ``ipv4:a.b.c.d:p`` / ``ipv6:[..]:p`` for an IP
    (no DNS, one subchannel), else the address as given (a name grpcio resolves)."""
    try:
        host, port = split_host_port(address)
    except ValueError:
        return address
    ip = _ip(host)
    if ip is None:
        return address
    return f"ipv{ip.version}:{join_host_port(str(ip), port)}"


def undial(target: str) -> str | None:
    """The address a slot's ``ipv4:``/``ipv6:`` dial target connects to (the inverse of
    ``dial_target`` for one IP), None for any other target."""
    scheme, _, rest = target.partition(":")
    if scheme not in ("ipv4", "ipv6") or not rest or "," in rest:
        return None
    return rest


def literal_list(scheme: str, rest: str) -> tuple[str, ...]:
    """The addresses of an ``ipv4:`` / ``ipv6:`` target, as ``host:port``."""
    found: list[str] = []
    for item in rest.split(","):
        host, port = split_host_port(item.strip())
        ip = _ip(host)
        if ip is None or ip.version != int(scheme[-1]):
            raise ValueError(f"{item!r} is not an {scheme} address")
        found.append(join_host_port(str(ip), port))
    return tuple(dict.fromkeys(found))


def name_of(target: str) -> tuple[str, bool] | None:
    """(the ``host[:port]`` a target names, whether it is an ip list) or None when
    the pool cannot resolve it (unix:, xds:, custom schemes)."""
    match = _SCHEME.match(target)
    if target.startswith("[") or match is None or match.group(2).isdigit():
        return target, False  # host:port, [v6]:port, host
    scheme, rest = match.group(1).lower(), match.group(2)
    if scheme in ("ipv4", "ipv6"):
        return rest, True
    if scheme == "dns":
        # dns:///host:port or dns://dns-server/host:port or dns:host:port
        return (rest[2:].partition("/")[2] if rest.startswith("//") else rest), False
    return None


def no_port(target: str | Sequence[str]) -> tuple[str, ...]:
    """The targets (of one, or of a list) that name a host without a port: grpcio
    dials port 443 for them ("localhost50051" is the host "localhost50051", port 443)."""
    found: list[str] = []
    for one in (target,) if isinstance(target, str) else target:
        named = name_of(one)
        if named is None or named[1]:
            continue  # unix:, xds:, ...; ipv4:/ipv6: lists need a port
        name = named[0].rpartition("@")[2]  # after any user-info
        bracketed = name.startswith("[") and name.endswith("]")
        if bracketed or (not name.startswith("[") and name.count(":") != 1):
            found.append(one)  # 'host', '[v6]', or a bare IPv6 literal
    return tuple(found)


def ip_literal(target: str) -> bool:
    """Whether ``target`` names an IP address (with or without a port): 'h', 'h:p',
    '[v6]', a bare IPv6 literal, 'dns:///h'."""
    named = name_of(target)
    if named is None or named[1]:
        return False
    try:
        host, _ = split_host_port(named[0].rpartition("@")[2])
    except ValueError:
        return False
    return _ip(host) is not None


def _grpc_balances(options: Sequence[tuple[str, object]]) -> bool:
    """The user chose grpcio's load balancing (a policy name, or one in a service config)."""
    for key, value in options:
        if key == "grpc.lb_policy_name":
            return True
        if key == "grpc.service_config" and "loadBalancing" in str(value):
            return True
    return False


def dns_server_of(target: str) -> tuple[str, int] | None:
    """(host, port) of the DNS server a ``dns://HOST[:PORT]/name`` target names (port 53
    by default), None for any other target (``dns:///name`` included)."""
    match = _SCHEME.match(target)
    if match is None or match.group(1).lower() != "dns" or not match.group(2).startswith("//"):
        return None
    authority = match.group(2)[2:].partition("/")[0]
    if not authority:
        return None
    host, port = split_host_port(authority, _DNS_PORT)
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"bad DNS server port in {target!r}")
    return host, int(port)


def has_dnspython() -> bool:
    """dnspython (the ``[dns]`` extra) is importable: ``dns://server/`` targets resolve."""
    try:
        import dns.resolver  # noqa: F401
    except ImportError:
        return False
    return True


def plan(config: PoolConfig) -> Plan | None:
    """How ``config``'s target spreads, or None when spreading is off
    (``spread_off_reason`` says why)."""
    decided = _decide(config)
    return decided if isinstance(decided, Plan) else None


def spread_off_reason(config: PoolConfig) -> str | None:
    """Why the pool does not spread ``config``'s target (``PoolStats.spread_off_reason``),
    None when it does."""
    decided = _decide(config)
    return decided if isinstance(decided, str) else None


def _decide(config: PoolConfig) -> Plan | str:
    """The plan, or why there is none: ``spread="off"``, a list of targets, an lb policy
    chosen in ``options``, a target the pool cannot resolve, or a single IP or
    localhost (nothing to spread)."""
    if config.spread == "off":
        return "spread='off'"
    if not isinstance(config.target, str):
        return "a list of targets"
    if _grpc_balances(config.options):
        return "grpcio's load balancing chosen in options"
    target = config.target
    named = name_of(target)
    if config.resolver is not None:  # the user's discovery: spread whatever the scheme
        authority = named[0] if named is not None and not named[1] else None
        return Plan(target, authority, None)
    if named is None:
        scheme = target.split(":", 1)[0].lower()
        return f"scheme {scheme!r} is not resolved by the pool"
    name, is_list = named
    try:
        if is_list:
            scheme = target.split(":", 1)[0].lower()
            return Plan(target, None, literal_list(scheme, name))
        host, _ = split_host_port(name)
        server = dns_server_of(target)
    except ValueError as exc:  # malformed: grpcio gets it as given and reports why it fails
        return f"malformed target ({exc})"
    if _ip(host) is not None:
        return "one IP address"  # nothing to spread, grpcio gets the target as given
    if _is_localhost(host):
        # One machine: its 127.0.0.1 and ::1 are one server, often listening on one
        # family only; grpcio's pick_first falls back between them, spreading would not.
        return "localhost"
    if server is not None and not has_dnspython():
        return NEEDS_DNS_EXTRA
    return Plan(target, name, None)


def _is_localhost(host: str) -> bool:
    host = host.lower().rstrip(".")
    return host == "localhost" or host.endswith(".localhost") or host == "localhost.localdomain"


def channel_config(config: PoolConfig, address: str | None, authority: str | None) -> PoolConfig:
    """The config a slot's channel is built from: ``address`` as the single target, the
    original name as the authority (also what TLS verifies). None: the target as given."""
    if address is None:
        return config
    options = tuple(config.options)
    if authority is not None and AUTHORITY not in dict(options):
        options += ((AUTHORITY, authority),)
    return replace(config, target=dial_target(address), options=options)
