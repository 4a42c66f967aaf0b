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
from .._config.targets import join_host_port, literal_list, name_of, split_host_port
from .._contract.commands import Resolved

__all__ = ["ResolverThread", "default_resolve"]

logger = logging.getLogger(__name__)

# A re-resolution asked for after a connection failure waits at least this long
# after the previous one: a flapping backend must not hammer DNS.
_MIN_GAP = 1.0
# Retry a failed resolution after this (doubling up to _RETRY_MAX), or sooner by interval.
_RETRY_FIRST = 0.5
_RETRY_MAX = 30.0


def default_resolve(target: str) -> list[str]:
    """Addresses of ``target`` by ``socket.getaddrinfo`` (IPv4 and IPv6), deduplicated,
    sorted (IPv4 first) so that every pool sees the same order."""
    named = name_of(target)
    if named is None:
        raise ValueError(f"cannot resolve {target!r}")
    name, is_list = named
    if is_list:
        return list(literal_list(target.split(":", 1)[0].lower(), name))
    host, port = split_host_port(name)
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    ips = {ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos}
    return [join_host_port(str(ip), port) for ip in sorted(ips, key=lambda ip: (ip.version, ip))]


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
        self._parking.ended()

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
