"""Fork safety: quiesce every live pool around ``os.fork()``.

grpcio (checked on 1.85) crashes a child that uses gRPC when, at fork time,
other threads of the parent were inside gRPC calls: without
GRPC_ENABLE_FORK_SUPPORT, children building a channel died of SIGSEGV while
grpcio's connectivity pollers were running or RPCs were in flight; with it, grpcio
skips its own fork handlers in that case. So before fork new RPCs through any
pool are held at the gate (outside gRPC) and those in flight get
``fork_drain_timeout`` to end; then every pool's threads park outside gRPC (one
protocol, ``Parkable``: the writer asks them, this thread waits). They wait on
Python queues and events between their short gRPC calls, so that takes a few
thread wake-ups (no poller tick: the pool's watcher is its own thread, see
``_workers/watch.py``). After fork the
parent unparks them and releases the held RPCs; the child drops the inherited
channels untouched, and its pool rebuilds on first use (``ForkSupport.revive``,
the one revive point, called by the readers and by every command to the writer).
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Callable

import grpc

from ._base.parking import Parkable
from ._channel import gate
from ._channel.pooled import CYGRPC
from ._contract.commands import Pause, Resume
from ._contract.state import PoolState
from ._readers.reader import Reader

__all__ = ["ForkSupport", "register_handlers"]

logger = logging.getLogger(__name__)

# How long the parent waits for its pools to park before forking anyway.
PAUSE_TIMEOUT = 5.0
# How often the fork handler looks whether the RPCs in flight have ended.
_DRAIN_POLL = 0.002
# Off only in tests that show what happens without it.
ENABLED = True
# Off only in tests that show grpcio's fork handlers running before the pool's.
GRPC_HANDLERS_FIRST = True

_live: weakref.WeakSet[ForkSupport] = weakref.WeakSet()
_parked: list[ForkSupport] = []
_lock = threading.Lock()
_registered = False


class ForkSupport:
    """One pool's side of fork safety: park before, unpark after in the parent; in
    the child, drop everything inherited and rebuild on first use.

    post: puts a command on the pool's current writer queue. relaunch: starts a
    new writer (with its workers) in the child. reset: the pool's own locks and
    events that a parent thread may have held at fork, made anew.
    """

    def __init__(
        self,
        reader: Reader,
        drain_timeout: float,
        post: Callable[[object], None],
        relaunch: Callable[[int], None],
        reset: Callable[[], None],
    ) -> None:
        self._reader = reader
        self.drain_timeout = drain_timeout
        # The pool's own methods, held weakly: the pool's threads reach this object
        # (through the reader), and must not keep an abandoned pool alive.
        self._post = weakref.WeakMethod(post)
        self._relaunch = weakref.WeakMethod(relaunch)
        self._reset = weakref.WeakMethod(reset)
        self._revive_lock = threading.Lock()
        self._orphans: tuple[object, ...] = ()
        self.forked = False

    def post(self, command: object) -> None:
        post = self._post()
        if post is not None:
            post(command)

    def track(self) -> None:
        with _lock:
            _live.add(self)
        register_handlers()

    def untrack(self) -> None:
        with _lock:
            _live.discard(self)

    def in_flight(self) -> int:
        return self._reader.in_flight()

    def park(self) -> Callable[[float], bool] | None:
        """Ask the writer to park the pool's threads; a wait for it (None: nothing runs)."""
        if self._reader.closed or self.forked:
            return None
        busy = self.in_flight()
        if busy:
            logger.warning(
                "%r: fork with %d RPCs still in flight after %gs; grpcio may crash the child",
                self._reader.owner,
                busy,
                self.drain_timeout,
            )
        command = Pause(threading.Event(), [])
        self.post(command)

        def wait(deadline: float) -> bool:
            """On the forking thread: the writer only asks; the waiting is done here."""
            if not command.dispatched.wait(max(0.0, deadline - time.monotonic())):
                return False
            threads: list[Parkable] = command.parked
            return all([thread.parked(deadline) for thread in threads])

        return wait

    def unpark(self) -> None:
        if not self._reader.closed and not self.forked:
            self.post(Resume())

    def child(self) -> None:
        """In the child: inherited channels are unusable and never touched again
        (closing them could write on sockets the parent still uses)."""
        inherited = self._reader.state
        self._orphans = (inherited,)
        self.forked = True
        self._revive_lock = threading.Lock()
        reset = self._reset()
        if reset is not None:
            reset()
        # No channel, same size; the first reader (or command) calls revive().
        self._reader.state = PoolState(expected=inherited.expected, forked=True)

    def revive(self) -> None:
        """The one revive point: first use in a forked child starts a new writer,
        new workers, new channels."""
        with self._revive_lock:
            if not self.forked or self._reader.closed:
                return
            relaunch = self._relaunch()
            if relaunch is None:  # the pool is gone
                return
            self.forked = False
            inherited: PoolState[object] = self._orphans[0]  # type: ignore[assignment]
            relaunch(max(1, inherited.expected))


def register_handlers() -> None:
    """Install the fork handlers, once per process (the first pool does), after
    grpcio's own (``_grpc_handlers_first``): Python runs before-fork handlers in the
    reverse order of registration, so at fork the pool's run first."""
    global _registered
    with _lock:
        if _registered or not hasattr(os, "register_at_fork"):
            return
        if GRPC_HANDLERS_FIRST:
            _grpc_handlers_first()
        os.register_at_fork(
            before=_before, after_in_parent=_after_in_parent, after_in_child=_after_in_child
        )
        _registered = True


def _grpc_handlers_first() -> None:
    """With GRPC_ENABLE_FORK_SUPPORT grpcio installs fork handlers of its own, with the
    process's first channel; its before-fork handler waits for grpcio's threads and
    holds them until after the fork: the connectivity pollers, and the threads that
    complete futures and streams. Run before the pool's, it stalls the pool's drain
    (each fork with futures in flight waited out ``fork_drain_timeout``) and its
    parking (held pollers never end; ``PooledChannel._wait_for_poller`` lets them
    count as parked). A pool's first channel is built by a worker, racing ``Pool()``;
    so when grpcio has not installed its handlers yet, one channel, built and closed
    at once (it never connects), makes it. Reads grpcio's private
    ``cygrpc._fork_state`` (tests/test_compat.py checks it)."""
    enabled = getattr(CYGRPC, "is_fork_support_enabled", None)
    state = getattr(CYGRPC, "_fork_state", None)
    if enabled is None or not enabled() or getattr(state, "fork_handler_registered", False):
        return
    grpc.insecure_channel("127.0.0.1:1").close()


def _before() -> None:
    if not ENABLED:
        return
    _lock.acquire()  # held across fork: no pool starts or closes meanwhile
    started = time.monotonic()
    pools = list(_live)
    gate.FORK_HOLD.set(True)  # no new RPC through a pool; those in flight may end
    drain_by = started + max((p.drain_timeout for p in pools), default=0.0)
    while any(p.in_flight() for p in pools) and time.monotonic() < drain_by:
        time.sleep(_DRAIN_POLL)
    deadline = started + PAUSE_TIMEOUT
    waits = [(pool, pool.park()) for pool in pools]
    for pool, parked in waits:
        if parked is not None and not parked(deadline):
            logger.warning("%r: not quiesced before fork; the child may crash", pool._reader.owner)
    _parked[:] = pools
    logger.debug("fork: %d pools quiesced in %.3fs", len(pools), time.monotonic() - started)


def _after_in_parent() -> None:
    if not ENABLED:
        return
    pools, _parked[:] = list(_parked), []
    _lock.release()
    for pool in pools:
        pool.unpark()
    gate.FORK_HOLD.set(False)


def _after_in_child() -> None:
    if not ENABLED:
        return
    global _lock
    pools, _parked[:] = list(_parked), []
    _lock = threading.Lock()  # the parent's is held by a thread that is not here
    gate.FORK_HOLD = gate.ForkHold()  # likewise its condition's lock
    for pool in pools:
        pool.child()
