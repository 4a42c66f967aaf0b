"""How an idle pool's watcher sleeps until its connections stir (Linux).

grpcio has no wait on several channels: each of its waits wakes every 0.2 s to
check for signals, and reading every channel each 0.2 s from one thread costs
an idle pool more than raw grpcio's own threads (``docs/performance.md``). But a
READY channel leaves READY because of its connection: a GOAWAY frame arrives, the
peer closes or resets it, or gRPC itself shuts it down (keepalive, idle timeout,
close): bytes, a FIN, an error or a hang-up on its socket. So while every watched
channel is READY, the watcher waits in an epoll of its own on those sockets
(``EPOLLIN | EPOLLRDHUP``, one-shot: one wake per arming, never a spin) and on its
bell, up to ``SWEEP`` (a change without any of these is seen then). It finds
them through grpcio's channelz (the ports of every connection of the channels
dialling its targets) and ``/proc`` (the TCP connection with those ports, its
inode, the descriptor holding it), and watches a duplicate of that descriptor
(``SocketWake``). It never reads from or writes to them.
"""

from __future__ import annotations

import contextlib
import os
import select
import sys
import threading
import weakref
from collections.abc import Iterable

from .._channel import channelz
from .._channel.channelz import Ports

__all__ = ["SWEEP", "LockBell", "SocketWake", "available"]

# Seconds the watcher sleeps on quiet sockets before one look anyway.
SWEEP = 5.0
_MASK = select.EPOLLIN | select.EPOLLRDHUP | select.EPOLLONESHOT if sys.platform == "linux" else 0
_ENDED = select.EPOLLHUP | select.EPOLLRDHUP | select.EPOLLERR if sys.platform == "linux" else 0
_ESTABLISHED = "01"
_live: weakref.WeakSet[SocketWake] = weakref.WeakSet()


def available() -> bool:
    """Whether this platform has what ``SocketWake`` uses (epoll, eventfd, /proc)."""
    return (
        sys.platform == "linux"
        and hasattr(select, "epoll")
        and hasattr(os, "eventfd")
        and os.path.isdir("/proc/self/fd")
    )


def tcp_inodes(ports: set[Ports]) -> dict[Ports, list[str]]:
    """The inodes of the established TCP connections (IPv4 or IPv6) with those ports
    (the table is the network namespace's: another process may hold the same pair)."""
    found: dict[Ports, list[str]] = {}
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path) as table:
                next(table, None)  # the header
                for line in table:
                    fields = line.split()
                    if len(fields) < 10 or fields[3] != _ESTABLISHED:
                        continue
                    local, remote = fields[1].rsplit(":", 1)[1], fields[2].rsplit(":", 1)[1]
                    pair = (int(local, 16), int(remote, 16))
                    if pair in ports:
                        found.setdefault(pair, []).append(fields[9])
        except OSError:  # no IPv6 table
            continue
    return found


def descriptors(inodes: Iterable[str]) -> dict[int, str]:
    """This process's descriptors holding those sockets (by inode)."""
    wanted = {f"socket:[{inode}]": inode for inode in inodes}
    found: dict[int, str] = {}
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # closed meanwhile
            inode = wanted.get(os.readlink(f"/proc/self/fd/{name}"))
            if inode is not None:
                found[int(name)] = inode
    return found


class LockBell:
    """The bell without ``SocketWake``: a lock held while the watcher waits, which a
    release ends early (a timed acquire costs an idle thread less than an Event)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()

    def ring(self) -> None:
        with contextlib.suppress(RuntimeError):  # rung already: the wait ends once
            self._lock.release()

    def wait(self, timeout: float | None) -> None:
        self._lock.acquire(timeout=-1 if timeout is None else timeout)

    def close(self) -> None:
        pass


class SocketWake:
    """The watcher's bell (an eventfd) and its epoll over the watched connections.

    The epoll watches a duplicate of each gRPC descriptor, never gRPC's own: gRPC
    reads a GOAWAY and closes its descriptor within microseconds, and a closed
    descriptor leaves an epoll without a word. On the duplicate, gRPC's
    ``shutdown()`` of the connection stays visible (a hang-up) until it is read
    here; then the duplicate is closed. One whose gRPC descriptor went without a
    shutdown is closed before the next sleep (``rearm``), so none keeps a
    connection open."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # ring against close: never write to a reused fd
        self._closed = False
        self._bell = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._epoll = select.epoll()
        self._epoll.register(self._bell, select.EPOLLIN)
        self._bell_only = select.poll()
        self._bell_only.register(self._bell, select.POLLIN)
        self._copies: dict[str, tuple[int, int]] = {}  # inode -> (gRPC's fd, our copy)
        self._by_copy: dict[int, str] = {}  # our copy -> inode
        self._fired: list[int] = []  # copies disarmed by their one-shot wake
        _live.add(self)

    # -- the bell (any thread) -----------------------------------------------------
    def ring(self) -> None:
        with self._lock:
            if not self._closed:
                os.eventfd_write(self._bell, 1)

    def wait(self, timeout: float | None) -> None:
        """Until the bell rings or ``timeout`` seconds pass (None: no limit)."""
        self._bell_only.poll(None if timeout is None else max(0, round(timeout * 1000)))
        self._quiet_bell()

    # -- the sockets (the watcher's thread) ------------------------------------------
    def arm(self, ready: dict[str, int]) -> bool:
        """Watch the connections of the channels dialling the targets of ``ready``.
        True when, for each target, at least ``ready[target]`` channels have every
        connection watched (a closing one of a retired channel may be missing)."""
        listed = channelz.socket_ports(set(ready))
        if listed is None:
            return False
        inodes = tcp_inodes({pair for _, ports in listed for pair in ports})
        held = descriptors(inode for candidates in inodes.values() for inode in candidates)
        found = {inode: fd for fd, inode in held.items()}
        covered = dict.fromkeys(ready, 0)
        for target, ports in listed:
            if ports and all(set(inodes.get(pair, ())) & found.keys() for pair in ports):
                covered[target] += 1
        if any(covered[t] < n for t, n in ready.items()):
            return False
        for inode in self._copies.keys() - found.keys():
            self._drop(inode)
        self._fired = []
        for inode, fd in found.items():
            if inode in self._copies:
                self._epoll.modify(self._copies[inode][1], _MASK)
                continue
            try:
                copy = os.dup(fd)
            except OSError:  # closed meanwhile
                return False
            if str(os.fstat(copy).st_ino) != inode:  # the number was reused meanwhile
                os.close(copy)
                return False
            self._copies[inode], self._by_copy[copy] = (fd, copy), inode
            self._epoll.register(copy, _MASK)
        return True

    def rearm(self) -> bool:
        """Arm again the copies that woke the watcher; False (arm anew) if gRPC let
        one of its descriptors go meanwhile (that copy is closed)."""
        fired, self._fired = self._fired, []
        for copy in fired:
            if copy in self._by_copy:
                self._epoll.modify(copy, _MASK)
        whole = True
        for inode, (fd, _copy) in list(self._copies.items()):
            try:
                still = os.readlink(f"/proc/self/fd/{fd}") == f"socket:[{inode}]"
            except OSError:
                still = False
            if not still:
                self._drop(inode)
                whole = False
        return whole

    def sleep(self, timeout: float) -> bool:
        """Until a watched connection stirs, the bell rings or ``timeout`` passes;
        whether a connection stirred. One that ends (hang-up, error) is let go."""
        stirred = False
        for fd, events in self._epoll.poll(timeout):
            if fd == self._bell:
                self._quiet_bell()
                continue
            inode = self._by_copy.get(fd)
            if inode is None:
                continue
            stirred = True
            if events & _ENDED:
                self._drop(inode)
            else:
                self._fired.append(fd)
        return stirred

    def forget(self) -> None:
        """Watch no connection any more (the bell goes on)."""
        for inode in list(self._copies):
            with contextlib.suppress(OSError):
                self._drop(inode)

    def close(self) -> None:
        """Close the epoll, the copies and the bell (gRPC's descriptors are gRPC's).
        The epoll first: in a forked child it is the parent's instance, whose
        entries must not be removed one by one."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._epoll.close()
            for _fd, copy in self._copies.values():
                with contextlib.suppress(OSError):
                    os.close(copy)
            self._copies, self._by_copy = {}, {}
            os.close(self._bell)
        _live.discard(self)

    def _drop(self, inode: str) -> None:
        _fd, copy = self._copies.pop(inode)
        del self._by_copy[copy]
        with contextlib.suppress(OSError):
            self._epoll.unregister(copy)
        os.close(copy)

    def _quiet_bell(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):  # not rung, or closed
            os.eventfd_read(self._bell)


def _after_fork_in_child() -> None:
    # The child's pools start new watchers: close what the parent's opened here.
    for wake in list(_live):
        wake._lock = threading.Lock()  # a parent thread may have held it at fork
        wake.close()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
