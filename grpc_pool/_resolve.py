"""Who finds the backends: parse a target, resolve it on a thread of its own, and post
the addresses to the writer. Never on the writer thread, never on the hot path."""

from __future__ import annotations

import ipaddress
import logging
import re
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._config import PoolConfig

__all__ = [
    "AUTHORITY",
    "Plan",
    "Resolved",
    "ResolverThread",
    "default_resolve",
    "dial_target",
    "plan",
    "split_host_port",
]

logger = logging.getLogger(__name__)

AUTHORITY = "grpc.default_authority"
# gRPC's default port for a target without one.
_DEFAULT_PORT = "443"
# A re-resolution asked for after a connection failure waits at least this long
# after the previous one: a flapping backend must not hammer DNS.
_MIN_GAP = 1.0
# Retry a failed resolution after this (doubling up to _RETRY_MAX), or sooner by interval.
_RETRY_FIRST = 0.5
_RETRY_MAX = 30.0
# Schemes grpcio resolves by itself and the pool cannot (or must not) spread.
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):(.*)$", re.DOTALL)


@dataclass(frozen=True, slots=True)
class Plan:
    """How one target spreads: the name channels to an address keep as authority
    (None: each address is its own authority), and the addresses when known
    without I/O (``ipv4:``/``ipv6:`` lists, an IP literal) else None."""

    target: str
    authority: str | None
    static: tuple[str, ...] | None


@dataclass(frozen=True, slots=True)
class Resolved:
    """The resolver thread's answer, a command for the writer: the addresses, or
    why there are none (the writer then keeps the last good ones)."""

    addresses: tuple[str, ...]
    error: str | None = None


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


def _join(host: str, port: str) -> str:
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
    return f"ipv{ip.version}:{_join(str(ip), port)}"


def _literal_list(scheme: str, rest: str) -> tuple[str, ...]:
    """The addresses of an ``ipv4:`` / ``ipv6:`` target, as ``host:port``."""
    found: list[str] = []
    for item in rest.split(","):
        host, port = split_host_port(item.strip())
        ip = _ip(host)
        if ip is None or ip.version != int(scheme[-1]):
            raise ValueError(f"{item!r} is not an {scheme} address")
        found.append(_join(str(ip), port))
    return tuple(dict.fromkeys(found))


def _name_of(target: str) -> tuple[str, bool] | None:
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


def _grpc_balances(options: Sequence[tuple[str, object]]) -> bool:
    """The user chose grpcio's load balancing (a policy name, or one in a service config)."""
    for key, value in options:
        if key == "grpc.lb_policy_name":
            return True
        if key == "grpc.service_config" and "loadBalancing" in str(value):
            return True
    return False


def plan(config: PoolConfig) -> Plan | None:
    """How ``config``'s target spreads, or None: spreading off (``spread="off"``, a list
    of targets, an lb policy chosen in ``options``, a target the pool cannot resolve,
    or a single IP: nothing to spread)."""
    if config.spread == "off" or not isinstance(config.target, str):
        return None
    if _grpc_balances(config.options):
        return None
    target = config.target
    named = _name_of(target)
    if config.resolver is not None:  # the user's discovery: spread whatever the scheme
        authority = named[0] if named is not None and not named[1] else None
        return Plan(target, authority, None)
    if named is None:
        return None
    name, is_list = named
    try:
        if is_list:
            scheme = target.split(":", 1)[0].lower()
            return Plan(target, None, _literal_list(scheme, name))
        host, _ = split_host_port(name)
    except ValueError:  # malformed: grpcio gets it as given and reports why it fails
        return None
    if _ip(host) is not None:
        return None  # one IP: nothing to spread, grpcio gets the target as given
    if _is_localhost(host):
        # One machine: its 127.0.0.1 and ::1 are one server, often listening on one
        # family only; grpcio's pick_first falls back between them, spreading would not.
        return None
    return Plan(target, name, None)


def _is_localhost(host: str) -> bool:
    host = host.lower().rstrip(".")
    return host == "localhost" or host.endswith(".localhost") or host == "localhost.localdomain"


def default_resolve(target: str) -> list[str]:
    """Addresses of ``target`` by ``socket.getaddrinfo`` (IPv4 and IPv6), deduplicated,
    sorted (IPv4 first) so that every pool sees the same order."""
    named = _name_of(target)
    if named is None:
        raise ValueError(f"cannot resolve {target!r}")
    name, is_list = named
    if is_list:
        return list(_literal_list(target.split(":", 1)[0].lower(), name))
    host, port = split_host_port(name)
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    ips = {ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos}
    return [_join(str(ip), port) for ip in sorted(ips, key=lambda ip: (ip.version, ip))]


def channel_config(config: PoolConfig, address: str | None, authority: str | None) -> PoolConfig:
    """The config a slot's channel is built from: ``address`` as the single target, the
    original name as the authority (also what TLS verifies). None: the target as given."""
    if address is None:
        return config
    options = tuple(config.options)
    if authority is not None and AUTHORITY not in dict(options):
        options += ((AUTHORITY, authority),)
    return replace(config, target=dial_target(address), options=options)


class ResolverThread:
    """Resolves every ``interval`` seconds (0: until the first success), and soon
    after ``poke()``; posts a ``Resolved`` each time. A resolution that fails or
    finds nothing posts the error; the writer keeps the last good addresses."""

    def __init__(
        self,
        target: str,
        resolve: Callable[[str], Sequence[str]],
        interval: float,
        post: Callable[[object], None],
        pool_name: str,
    ) -> None:
        self._target = target
        self._resolve = resolve
        self._interval = interval
        self._post = post
        self._pool_name = pool_name
        self._wake = threading.Event()
        self._stopped = False
        self._poked = False
        # Held while resolving, and by the writer while paused for fork.
        self._busy = threading.Lock()
        self._paused = False
        self.thread = threading.Thread(
            target=self._run, name=f"grpc_pool-resolver-{pool_name}", daemon=True
        )

    def start(self) -> None:
        self.thread.start()

    def poke(self) -> None:
        """A connection failed: resolve again soon (at most once per _MIN_GAP)."""
        self._poked = True
        self._wake.set()

    def stop(self) -> None:
        self._stopped = True
        self._wake.set()

    def pause(self, deadline: float) -> bool:
        """Before fork (on the writer thread): False if a resolution outlasts ``deadline``."""
        self._paused = self._busy.acquire(timeout=max(0.0, deadline - time.monotonic()))
        return self._paused

    def resume(self) -> None:
        if self._paused:
            self._paused = False
            self._busy.release()

    def join(self, deadline: float) -> None:
        if not self.thread.is_alive() and not self.thread.ident:
            return
        self.thread.join(max(0.0, deadline - time.monotonic()))
        if self.thread.is_alive():
            logger.warning(
                "pool %s: resolver of %r still resolving at close", self._pool_name, self._target
            )

    def _run(self) -> None:
        last = -_MIN_GAP
        due = time.monotonic()
        retry = _RETRY_FIRST
        while not self._stopped:
            now = time.monotonic()
            when = min(due, max(last + _MIN_GAP, now)) if self._poked else due
            if now < when:
                self._wake.wait(when - now)
                self._wake.clear()
                continue
            self._poked = False
            last = time.monotonic()
            with self._busy:
                addresses, error = self._once()
            if self._stopped:
                break
            self._post(Resolved(addresses, error))
            if error is None:
                retry = _RETRY_FIRST
                if not self._interval:
                    break  # resolve_interval=0: once, at start
                due = last + self._interval
            else:
                due = last + min(retry, self._interval or retry)
                retry = min(retry * 2, _RETRY_MAX)

    def _once(self) -> tuple[tuple[str, ...], str | None]:
        try:
            found = self._resolve(self._target)
            if isinstance(found, str) or not isinstance(found, Sequence):
                return (), f"resolver returned {type(found).__name__}, not a sequence of str"
            addresses = tuple(dict.fromkeys(str(a).strip() for a in found if str(a).strip()))
        except Exception as exc:  # any failure keeps the last good addresses
            return (), f"{type(exc).__name__}: {exc}"
        if not addresses:
            return (), "resolved to no address"
        return addresses, None
