"""Fork safety: quiesce every live pool around ``os.fork()``.

grpcio (checked on 1.85) crashes a child that uses gRPC when, at fork time,
other threads of the parent were inside gRPC calls: without
GRPC_ENABLE_FORK_SUPPORT, children building a channel died of SIGSEGV while a
pool's connectivity pollers were running or RPCs were in flight; with it, grpcio
skips its own fork handlers in that case. So before fork new RPCs through any
pool are held (outside gRPC) and those in flight get ``fork_drain_timeout`` to
end; then every pool parks its threads outside gRPC (workers unsubscribe,
gRPC's poller threads end, the writer waits). After fork the parent resumes and
releases the held RPCs; the child drops the inherited channels untouched and
rebuilds its pool on first use.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from . import _counting
from ._commands import Pause, Resume
from ._state import PoolState

if TYPE_CHECKING:
    from ._config import PoolConfig
    from ._events import Dispatcher, Listener
    from ._pool import Pool
    from ._writer import Writer

__all__ = ["ForkAware", "track", "untrack"]

logger = logging.getLogger(__name__)

# How long the parent waits for its pools to park before forking anyway.
PAUSE_TIMEOUT = 5.0
# How often the fork handler looks whether the RPCs in flight have ended.
_DRAIN_POLL = 0.002
# Off only in tests that show what happens without it.
ENABLED = True

_live: weakref.WeakSet[Pool] = weakref.WeakSet()
_paused: list[Pool] = []
_lock = threading.Lock()
_registered = False


def track(pool: Pool) -> None:
    global _registered
    with _lock:
        _live.add(pool)
        if not _registered and hasattr(os, "register_at_fork"):
            os.register_at_fork(
                before=_before, after_in_parent=_after_in_parent, after_in_child=_after_in_child
            )
            _registered = True


def untrack(pool: Pool) -> None:
    with _lock:
        _live.discard(pool)


def _before() -> None:
    if not ENABLED:
        return
    _lock.acquire()  # held across fork: no pool starts or closes meanwhile
    started = time.monotonic()
    pools = list(_live)
    _counting.FORK_HOLD.set(True)  # no new RPC through a pool; those in flight may end
    drain_by = started + max((p.config.fork_drain_timeout for p in pools), default=0.0)
    while any(p._in_flight() for p in pools) and time.monotonic() < drain_by:
        time.sleep(_DRAIN_POLL)
    deadline = started + PAUSE_TIMEOUT
    waits = [(pool, pool._fork_pause()) for pool in pools]
    for pool, paused in waits:
        if paused is not None and not paused(deadline):
            logger.warning("%r: not quiesced before fork; the child may crash", pool)
    _paused[:] = pools
    logger.debug("fork: %d pools quiesced in %.3fs", len(pools), time.monotonic() - started)


def _after_in_parent() -> None:
    if not ENABLED:
        return
    pools, _paused[:] = list(_paused), []
    _lock.release()
    for pool in pools:
        pool._fork_resume()
    _counting.FORK_HOLD.set(False)


def _after_in_child() -> None:
    if not ENABLED:
        return
    global _lock
    pools, _paused[:] = list(_paused), []
    _lock = threading.Lock()  # the parent's is held by a thread that is not here
    _counting.FORK_HOLD = _counting.ForkHold()  # likewise its condition's lock
    for pool in pools:
        pool._fork_child()


class ForkAware:
    """The pool's side of fork safety (mixed into ``Pool``): park before, resume
    after in the parent, drop everything inherited in the child and rebuild on
    first use."""

    if not TYPE_CHECKING:  # slotted like Pool; the fields are Pool's own slots
        __slots__ = ()

    name: str
    _closed: bool
    _forked: bool
    _config: PoolConfig
    _state: PoolState
    _writer: Writer
    _events: Dispatcher
    _orphans: tuple[object, ...]
    _finalizer: weakref.finalize[Any, Any]
    _revive_lock: threading.Lock
    _ready: threading.Condition
    _scaling: threading.Lock

    if TYPE_CHECKING:

        def _launch(self, size: int, listeners: Sequence[Listener]) -> None: ...

    def _fork_pause(self) -> Callable[[float], bool] | None:
        """Ask the writer to park the pool; return a wait for it, None if nothing runs."""
        if self._closed or self._forked:
            return None
        busy = self._in_flight()
        if busy:
            logger.warning(
                "%r: fork with %d RPCs still in flight after %gs; grpcio may crash the child",
                self,
                busy,
                self._config.fork_drain_timeout,
            )
        command = Pause(threading.Event(), [])
        self._writer.queue.put(command)

        def wait(deadline: float) -> bool:
            """On the forking thread: the writer only asks; the waiting is done here."""
            if not command.dispatched.wait(max(0.0, deadline - time.monotonic())):
                return False
            return all([parked(deadline) for parked in command.waits])

        return wait

    def _in_flight(self) -> int:
        """RPCs in flight on the published and retiring channels (counted ones)."""
        state = self._state
        return sum(c.in_flight or 0 for c in (*state.channels, *state.retired))

    def _fork_resume(self) -> None:
        if not self._closed and not self._forked:
            self._writer.queue.put(Resume())

    def _fork_child(self) -> None:
        """In the child: inherited channels are unusable and never touched again
        (closing them could write on sockets the parent still uses); rebuild on first use."""
        self._orphans = (self._state, self._writer)
        self._forked = True
        self._state = PoolState(expected=self._state.expected)  # no channel, same size
        self._finalizer.detach()
        self._revive_lock = threading.Lock()
        self._ready = threading.Condition()
        self._scaling = threading.Lock()

    def _revive(self) -> None:
        """First use in a forked child: a new writer, new workers, new channels."""
        with self._revive_lock:
            if not self._forked or self._closed:
                return
            listeners = [d.listener for d in self._events.deliveries]
            self._forked = False
            inherited: PoolState = self._orphans[0]  # type: ignore[assignment]
            self._launch(max(1, inherited.expected), listeners)
