"""Who finds the backends: the resolver thread resolves the target and posts the
addresses to the writer. Never on the writer thread, never on the hot path."""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
import time
from collections.abc import Callable, Sequence

from .._base.parking import Parking
from .._config.targets import (
    dns_server_of,
    join_host_port,
    literal_list,
    name_of,
    split_host_port,
)
from .._contract.commands import Resolved
from .dnsquery import query

__all__ = ["ResolverThread", "default_resolve", "default_resolve_ttl"]

# What a resolution found: addresses, and the seconds they stay valid when known (TTL).
Found = tuple[Sequence[str], float | None]

logger = logging.getLogger(__name__)

# A re-resolution asked for after a connection failure waits at least this long
# after the previous one: a flapping backend must not hammer DNS.
_MIN_GAP = 1.0
# Retry a failed resolution after this (doubling up to _RETRY_MAX), or sooner by interval.
_RETRY_FIRST = 0.5
_RETRY_MAX = 30.0


def default_resolve(target: str) -> list[str]:
    """Addresses of ``target``: by ``socket.getaddrinfo`` (IPv4 and IPv6), or for
    ``dns://HOST[:PORT]/name`` asked of that DNS server (dnspython); deduplicated,
    sorted (IPv4 first) so that every pool sees the same order."""
    return list(default_resolve_ttl(target)[0])


def default_resolve_ttl(target: str) -> tuple[list[str], float | None]:
    """``default_resolve`` and the answer's TTL in seconds (None: unknown, getaddrinfo)."""
    named = name_of(target)
    if named is None:
        raise ValueError(f"cannot resolve {target!r}")
    name, is_list = named
    if is_list:
        return list(literal_list(target.split(":", 1)[0].lower(), name)), None
    host, port = split_host_port(name)
    server = dns_server_of(target)
    if server is not None:
        return query(server, host, port)
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    ips = {ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos}
    ordered = sorted(ips, key=lambda ip: (ip.version, ip))
    return [join_host_port(str(ip), port) for ip in ordered], None


class ResolverThread:
    """Resolves every ``interval`` seconds (0: until the first success), and soon
    after ``poke()``; posts a ``Resolved`` each time. A resolution that fails or
    finds nothing posts the error; the writer keeps the last good addresses.

    ``resolve(target) -> (addresses, ttl)``: with a TTL (seconds), the next
    resolution comes no later than it, and no sooner than ``_MIN_GAP`` after this
    one (a TTL of 0 or 1 s must not hammer DNS). With ``interval`` 0 it resolves
    once whatever the TTL."""

    def __init__(
        self,
        target: str,
        resolve: Callable[[str], Found],
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
        self._parking = Parking()  # fork: parked between resolutions, never in one
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

    # -- fork (Parkable) --------------------------------------------------------
    def park(self) -> None:
        self._parking.request()
        self._wake.set()

    def parked(self, deadline: float) -> bool:
        return self._parking.wait(deadline, self.thread)

    def unpark(self) -> None:
        self._parking.release()

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
            if self._parking.wanted:
                self._parking.park_here()
                continue
            now = time.monotonic()
            when = min(due, max(last + _MIN_GAP, now)) if self._poked else due
            if now < when:
                self._wake.wait(when - now)
                self._wake.clear()
                continue
            self._poked = False
            last = time.monotonic()
            addresses, ttl, error = self._once()
            if self._stopped:
                break
            self._post(Resolved(addresses, error))
            if error is None:
                retry = _RETRY_FIRST
                if not self._interval:
                    break  # resolve_interval=0: once, at start
                due = last + _next_in(self._interval, ttl)
            else:
                due = last + min(retry, self._interval or retry)
                retry = min(retry * 2, _RETRY_MAX)
        self._parking.ended()

    def _once(self) -> tuple[tuple[str, ...], float | None, str | None]:
        try:
            found, ttl = self._resolve(self._target)
            if isinstance(found, str) or not isinstance(found, Sequence):
                return (), None, f"resolver returned {type(found).__name__}, not a sequence of str"
            addresses = tuple(dict.fromkeys(str(a).strip() for a in found if str(a).strip()))
        except Exception as exc:  # any failure keeps the last good addresses
            return (), None, f"{type(exc).__name__}: {exc}"
        if not addresses:
            return (), None, "resolved to no address"
        return addresses, ttl, None


def _next_in(interval: float, ttl: float | None) -> float:
    """Seconds to the next resolution after a success: ``interval``, or sooner when the
    answer's TTL ends sooner, but never under ``_MIN_GAP``."""
    if ttl is None:
        return interval
    return min(interval, max(ttl, _MIN_GAP))
