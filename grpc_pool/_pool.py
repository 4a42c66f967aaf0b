"""Pool: the public face. It owns the reader API (readers pick from the published
state with no lock), the writer, the event dispatcher, the round trips to the
writer and the pool's fork support, and calls them."""

from __future__ import annotations

import itertools
import logging
import threading
import weakref
from collections.abc import Callable, Hashable, Sequence
from dataclasses import fields
from typing import Any, TypeVar

import grpc
from typing_extensions import Self

from ._base.errors import InvalidConfig, PoolClosed, PoolTimeout
from ._channel.pooled import PooledChannel, bounded_put
from ._config.config import PoolConfig
from ._config.targets import spread_off_reason
from ._config.validate import MAX_SIZE, check_count, check_seconds
from ._contract.commands import Close, Reply, SetPick
from ._contract.events import Dispatcher, Listener
from ._control import Control
from ._fork import ForkSupport
from ._readers.poolchannel import PoolChannel
from ._readers.reader import Reader, State
from ._readers.report import pool_stats, pool_status
from ._readers.retry import Retrier, read_count
from ._readers.stats import PoolStats, PoolStatus
from ._readers.strategy import reader_pick, resolve_strategy
from ._writer.loop import Writer

__all__ = ["Pool"]

logger = logging.getLogger(__name__)

S = TypeVar("S")

_pool_numbers = itertools.count(1)
_OPTION_NAMES = frozenset(f.name for f in fields(PoolConfig)) - {"target"}
# Slack over a grace for the writer to finish closing (joins, late messages).
_CLOSE_SLACK = 10.0


class Pool:
    """A pool of grpc channels, each on its own TCP connection.

    ``Pool(target, **options)`` takes the fields of ``PoolConfig`` as keywords.
    It returns at once; channels connect in the background. Thread-safe.
    """

    __slots__ = (
        "__weakref__",
        "_config",
        "_control",
        "_credentials",
        "_events",
        "_finalizer",
        "_fork",
        "_pool_channel",
        "_reader",
        "_retrier",
        "_spread_off",
        "_writer",
        "name",
    )

    def __init__(self, target: str | Sequence[str], **options: Any) -> None:
        if isinstance(target, PoolConfig):
            raise InvalidConfig(
                "target=PoolConfig(...) is not allowed: Pool() takes a target and"
                " PoolConfig's fields as keywords; for a PoolConfig use Pool.from_config(config)"
            )
        unknown = sorted(set(options) - _OPTION_NAMES)
        if unknown:
            allowed = ", ".join(sorted(_OPTION_NAMES))
            raise InvalidConfig(f"unknown option(s) {', '.join(unknown)}; allowed: {allowed}")
        self._start(PoolConfig(target=target, **options))

    @classmethod
    def from_config(cls, config: PoolConfig) -> Pool:
        """A pool started from a ``PoolConfig``."""
        if not isinstance(config, PoolConfig):
            raise InvalidConfig(f"config={config!r} is not allowed: expected a PoolConfig")
        pool = cls.__new__(cls)
        pool._start(config)
        return pool

    def _start(self, config: PoolConfig) -> None:
        self._config = config
        self._spread_off = spread_off_reason(config)  # once: it may try an import
        self.name = config.name or f"pool-{next(_pool_numbers)}"
        if config.insecure:
            self._credentials = None
        else:
            self._credentials = config.credentials or grpc.ssl_channel_credentials()
        self._reader = reader = Reader(config, self)
        post = self._post
        self._fork = ForkSupport(
            reader, config.fork_drain_timeout, post, self._relaunch, self._reset_locks
        )
        reader.revive = self._fork.revive
        self._control = Control(reader, post, self._fork.revive)
        self._events = Dispatcher(self.name)
        for listener in config.listeners:
            self._events.add(listener)
        self._retrier = Retrier(reader)  # the one retry of every API and RPC kind
        self._pool_channel = PoolChannel(reader, self, self._retrier)
        self._launch(config.size)
        self._fork.track()

    def _post(self, command: object) -> None:
        self._writer.queue.put(command)

    def _launch(self, size: int) -> None:
        """Start the writer (which starts the workers); also after fork in the child."""
        strategy = resolve_strategy(self._config.strategy)
        rate, name = self._config.telemetry_sample_rate, self.name

        def make_pick(emit: Any) -> Any:
            return reader_pick(strategy, rate, emit, name)

        reader = self._reader
        reroute = self._retrier.bind if self._retrier.active else None
        self._writer = Writer(
            self._config, self._credentials, name, self._events, make_pick, reader.publish, reroute
        )
        self._finalizer = weakref.finalize(self, _abandon, self._writer.queue, self._events)
        self._writer.set_pick_now()  # its thread does not run yet: the listeners given
        try:
            self._writer.start(size)  # on failure it has stopped and joined its threads
        except BaseException:
            self._finalizer.detach()
            self._events.close()
            raise

    def _relaunch(self, size: int) -> None:
        """In a forked child, on first use: a new writer with the listeners kept."""
        listeners = [d.listener for d in self._events.deliveries]
        self._events = Dispatcher(self.name)
        for listener in listeners:
            self._events.add(listener)
        self._launch(size)

    def _reset_locks(self) -> None:
        """In a forked child: locks a parent thread may have held at fork, made anew."""
        self._finalizer.detach()
        self._control.scaling = threading.Lock()
        self._pool_channel._watch = type(self._pool_channel._watch)(self._reader, self.name)

    # -- readers -------------------------------------------------------------------
    # key is positional-or-keyword on purpose: CPython 3.11+ does not specialize calls
    # to functions with keyword-only parameters (measured: +26% per get_channel).
    def get_channel(self, timeout: float | None = None, key: Hashable = None) -> PooledChannel:
        """A ready channel, picked by the strategy (or by ``key``).

        timeout: None (default) raises ``NoChannelAvailable`` at once when no
            channel is ready; a number of seconds waits that long for one.
        key: any hashable (a user id, a shard): the same key gets the same slot
            while the pool's membership is unchanged, and only about 1/n of keys
            move when a slot is added or removed (rendezvous hashing). If the
            key's slot is not ready, another ready channel is used meanwhile.
        Raises ``PoolClosed`` after ``close()``.
        """
        state = self._reader.state  # read once: the picker is bound to its channels
        pick = state.pick
        if pick is not None and timeout is None and key is None:
            return pick()
        return self._reader.get(timeout, key, state)

    @property
    def _state(self) -> State:
        """The published state now (for tests and tools)."""
        return self._reader.state

    @property
    def _snapshot(self) -> tuple[PooledChannel, ...]:
        """The channels in rotation now (for tests and tools)."""
        return self._reader.state.channels

    @property
    def channel(self) -> PoolChannel:
        """The pool as one ``grpc.Channel`` (the same object every time): build a
        stub on it once (``OrdersStub(pool.channel)``), or hand it to a GAPIC
        transport or ``grpc.intercept_channel``; each RPC picks a ready pooled
        channel. Its ``close()`` does nothing: close the pool."""
        return self._pool_channel

    def stub(
        self,
        stub_class: Callable[[grpc.Channel], S],
        timeout: float | None = None,
        key: Hashable = None,
    ) -> S:
        """A ``stub_class`` stub bound to the channel picked for this call.

        Stubs are cached per channel (generated stubs build every method in
        ``__init__``), so this costs a dict lookup after the first call. The
        cache lives on the channel: a stub of a retired channel is never handed
        out, because a retired channel is never picked. It is keyed by
        ``stub_class`` identity and holds at most 256 entries per channel (the
        oldest goes first): pass a class, not a new lambda per call. A stub
        built once on ``pool.channel`` needs no cache at all.
        timeout, key: as for ``get_channel``.
        """
        channel = self.get_channel(timeout, key)
        stubs = channel._stubs
        stub = stubs.get(stub_class)
        if stub is None:
            stub = stub_class(channel)
            bounded_put(stubs, stub_class, stub)
        return stub

    def wait_ready(self, timeout: float = 10.0, min_ready: int = 1) -> PoolStatus:
        """Block until ``min_ready`` channels are ready; return the status then.

        timeout: seconds to wait. Default 10.0. Raises ``PoolTimeout`` when it runs out.
        min_ready: channels to wait for, 1..expected size. Default 1.
        """
        check_seconds("timeout", timeout)
        check_count("min_ready", min_ready, MAX_SIZE)
        self._fork.revive()
        expected = self._reader.state.expected
        if min_ready > expected and not self._reader.closed:
            raise InvalidConfig(
                f"min_ready={min_ready!r} is not allowed: expected 1..{expected} "
                "(the pool's expected size)",
                self,
            )
        if self._reader.wait_for(min_ready, timeout or 0.0) is None:
            state = self._reader.state
            ready = len(state.channels)
            # The pool's own count (as its repr's ready=R/N), then what the wait asked.
            error = PoolTimeout(
                f"wait_ready timed out after {timeout:g}s: {ready} of {state.expected} "
                f"channels ready, min_ready={min_ready} needed{self._reader.why(state)}",
                self,
            )
            logger.warning("%s", error)
            if ready:
                raise error
            # The same cause a get_channel() would report now (a NoChannelAvailable).
            raise error from self._reader.not_available(timeout, state)
        return self.status()

    def status(self) -> PoolStatus:
        """Expected size, ready channels and "healthy" | "degraded" | "down"."""
        return pool_status(self._reader.state)

    def stats(self) -> PoolStats:
        """A frozen snapshot per slot and in total; cheap enough for a health endpoint."""
        reader = self._reader
        retries = (
            read_count(reader.retries),
            read_count(reader.policy_retries),
            read_count(reader.hedges),
            read_count(reader.hedges_won),
        )
        dropped = self._events.dropped
        return pool_stats(self.name, self._config, reader.state, dropped, retries, self._spread_off)

    @property
    def config(self) -> PoolConfig:
        return self._config

    # -- scaling ---------------------------------------------------------------------
    def scale_up(self, n: int) -> int:
        """Add ``n`` slots (an int >= 1); return the new expected size.

        Raises ``InvalidConfig`` if the size would exceed 1,024 (see ``PoolConfig``).
        """
        return self._control.scale_up(n)

    def scale_down(self, n: int) -> int:
        """Remove ``n`` slots (an int >= 1), not-ready and least loaded first.

        Their channels leave the rotation at once and close after ``retire_grace``.
        Raises ``WouldEmptyPool`` (an ``InvalidConfig``) if fewer than 1 slot would remain.
        """
        return self._control.scale_down(n)

    def resize(self, size: int) -> int:
        """Set the expected size (an int 1..1,024); return it."""
        return self._control.resize(size)

    def _call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on the writer thread and return its result (extensions, tests)."""
        return self._control.call(fn)

    # -- events --------------------------------------------------------------------
    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(event)`` for every ``PoolEvent`` of this pool.

        Listeners run on a thread of their own (one per listener), never on the
        caller's thread, except that building a sampled ``GetChannelEvent``
        happens in ``get_channel``. A listener that raises is logged; one that
        blocks only delays (and past 10 000 pending, loses) its own events.
        """
        if self._reader.closed:
            raise PoolClosed("pool is closed", self)
        self._fork.revive()
        self._events.add(listener)
        self._change_pick()

    def remove_listener(self, listener: Listener) -> None:
        """Stop calling ``listener``; events already queued for it are delivered first."""
        self._events.remove(listener)
        self._change_pick()

    def _change_pick(self) -> None:
        """Readers' picker samples GetChannelEvents only while someone listens (and
        ``telemetry_sample_rate`` asks for it): the writer republishes it."""
        if not self._config.telemetry_sample_rate or self._reader.closed or self._fork.forked:
            return
        if threading.current_thread() is self._writer.thread:
            self._writer.set_pick_now()  # from a command running on the writer itself
            return
        reply = Reply()
        self._post(SetPick(reply))
        self._control.wait(reply)

    # -- close ---------------------------------------------------------------------
    def close(self, grace: float = 5.0) -> None:
        """Stop handing out channels, let in-flight RPCs finish, close everything.

        grace: seconds RPCs in flight get to finish before their channel is
            closed (which cancels them). Default 5.0. Idempotent; joins every
            thread the pool started before returning.
        """
        check_seconds("grace", grace)
        already = self._reader.closed
        self._reader.close()
        self._fork.untrack()
        if self._fork.forked:  # a child that never used the pool: nothing of its own runs
            return
        writer = self._writer
        if not already:
            self._finalizer.detach()
            writer.queue.put(Close(grace, Reply()))
        if threading.current_thread() is not writer.thread:
            writer.thread.join(grace + _CLOSE_SLACK)
            if writer.thread.is_alive():
                logger.warning("%r: writer did not finish closing in time", self)
        self._events.close()  # after the writer: the pool_closed event is delivered
        self._pool_channel._watch.join(_CLOSE_SLACK)  # it delivers SHUTDOWN, then ends

    @property
    def closed(self) -> bool:
        """True once ``close()`` was called."""
        return self._reader.closed

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        status = self.status()
        state = "closed" if self._reader.closed else status.state
        return (
            f"<Pool {self.name!r} target={self._config.target_label!r} "
            f"ready={status.current_size}/{status.expected_size} state={state}>"
        )


def _abandon(commands: Any, events: Dispatcher) -> None:
    """A pool collected (or alive at exit) without close(): stop its threads."""
    commands.put(Close(0.0, Reply()))
    events.close()
