"""The one way a pool's thread parks for ``os.fork()``.

A thread that calls into gRPC must be outside it when the process forks (a
thread inside gRPC at fork time can crash the child). Every such thread of a
pool (worker, reaper, resolver) implements ``Parkable``; the writer asks them
all to park, the forking thread waits for them, and after the fork they are
released. Nothing stays parked or held longer than ``HOLD_LIMIT``.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol

__all__ = ["HOLD_LIMIT", "Parkable", "Parking"]

# The one bound on a fork's hold: a parked thread, or an RPC held at the gate,
# goes on by itself after this long (a fork handler that never returned).
HOLD_LIMIT = 30.0


class Parkable(Protocol):
    """A thread of a pool that can be parked outside gRPC."""

    def park(self) -> None:
        """Ask the thread to park; returns at once."""

    def parked(self, deadline: float) -> bool:
        """Wait (on the forking thread) until parked or ended; False if ``deadline`` came first."""

    def unpark(self) -> None:
        """Let the thread go on."""


class Parking:
    """One thread's parking state, owned by the object that runs the thread.

    ``request``/``wait``/``release`` are for other threads; the thread itself
    checks ``wanted`` between its gRPC calls and calls ``park_here``.
    """

    __slots__ = ("_parked", "_release", "wanted")

    def __init__(self) -> None:
        self.wanted = False
        self._parked = threading.Event()
        self._release = threading.Event()

    def request(self) -> None:
        self._parked.clear()
        self._release.clear()
        self.wanted = True

    def wait(self, deadline: float, thread: threading.Thread) -> bool:
        """Parked, or ``thread`` not running; False if ``deadline`` came first."""
        while not self._parked.is_set() and thread.is_alive():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self._parked.wait(min(left, 0.01))
        return True

    def release(self) -> None:
        self.wanted = False
        self._release.set()

    def park_here(self) -> None:
        """On the parking thread: say so, then wait for the release (or ``HOLD_LIMIT``)."""
        self._parked.set()
        if not self._release.wait(HOLD_LIMIT):
            self.wanted = False  # the release never came: go on
        # Released: ``release`` cleared ``wanted`` already. Clearing it here too would
        # undo the next fork's ``request`` when it came first: a thread that checks
        # ``wanted`` (the reaper, the watcher) would not park, and that fork waits
        # PAUSE_TIMEOUT (5 s; measured once in 30 forks with RPCs in flight).

    def ended(self) -> None:
        """On the parking thread as it ends: a waiter need not wait for it."""
        self._parked.set()
