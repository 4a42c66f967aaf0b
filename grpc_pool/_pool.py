"""Pool: the public facade. Readers pick from the published snapshot with no lock."""

from __future__ import annotations

import itertools
import logging
import threading
import time
import weakref
from collections.abc import Callable, Hashable, Sequence
from dataclasses import fields
from typing import Any, TypeVar

import grpc
from typing_extensions import Self

from . import _fork
from ._channel import PooledChannel, bounded_put
from ._commands import Close, Reply, SetPick
from ._config import MAX_SIZE, PoolConfig, check_count, check_seconds
from ._errors import (
    InvalidConfig,
    NoChannelAvailable,
    PoolClosed,
    PoolTimeout,
)
from ._events import Dispatcher, Listener
from ._fork import ForkAware
from ._poolchannel import PoolChannel
from ._report import pool_stats, pool_status
from ._scaling import Scaling
from ._state import EMPTY, PoolState, SlotStatus
from ._stats import PoolStats, PoolStatus
from ._strategy import resolve_strategy
from ._writer import Writer

__all__ = ["Pool"]

logger = logging.getLogger(__name__)

T = TypeVar("T")
S = TypeVar("S")

_pool_numbers = itertools.count(1)
_OPTION_NAMES = frozenset(f.name for f in fields(PoolConfig)) - {"target"}
# Slack over a grace for the writer to finish closing (joins, late messages).
_CLOSE_SLACK = 10.0
# Longest single wait for a ready channel: a lost wake-up costs at most this.
_WAIT_TICK = 5.0


class Pool(ForkAware, Scaling):
    """A pool of grpc channels, each on its own TCP connection.

    ``Pool(target, **options)`` takes the fields of ``PoolConfig`` as keywords.
    It returns at once; channels connect in the background. Thread-safe.
    """

    __slots__ = (
        "__weakref__",
        "_closed",
        "_config",
        "_credentials",
        "_events",
        "_finalizer",
        "_forked",
        "_orphans",
        "_pool_channel",
        "_ready",
        "_revive_lock",
        "_scaling",
        "_state",
        "_strategy",
        "_writer",
        "name",
    )

    _state: PoolState  # published by the writer: everything readers see, one swap

    def __init__(self, target: str | Sequence[str], **options: Any) -> None:
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
        self.name = config.name or f"pool-{next(_pool_numbers)}"
        if config.insecure:
            self._credentials = None
        else:
            self._credentials = config.credentials or grpc.ssl_channel_credentials()
        self._forked = False
        self._orphans: tuple[object, ...] = ()
        self._strategy = resolve_strategy(config.strategy)
        self._state = EMPTY
        self._closed = False
        self._pool_channel = PoolChannel(self)
        self._launch(config.size, config.listeners)
        _fork.track(self)

    def _launch(self, size: int, listeners: Sequence[Listener]) -> None:
        """Start the writer (which starts the workers); also after fork in the child."""
        self._ready = threading.Condition()
        self._scaling = threading.Lock()
        self._events = Dispatcher(self.name)
        for listener in listeners:
            self._events.add(listener)
        self._writer = Writer(
            self,
            self._config,
            self._credentials,
            self.name,
            self._ready,
            self._events,
            self._strategy,
        )
        self._finalizer = weakref.finalize(self, _abandon, self._writer.queue, self._events)
        self._writer._set_pick()  # its thread does not run yet: the listeners given
        try:
            self._writer.start(size)  # on failure it has stopped and joined its threads
        except BaseException:
            self._finalizer.detach()
            self._events.close()
            raise

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
        pick = self._state.pick  # bound to the published channels; None when there are none
        if pick is not None and timeout is None and key is None:
            return pick()
        return self._get_slow(timeout, key)

    @property
    def _snapshot(self) -> tuple[PooledChannel, ...]:
        """The channels in rotation now (for tests and tools)."""
        return self._state.channels

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

    # -- events --------------------------------------------------------------------
    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(event)`` for every ``PoolEvent`` of this pool.

        Listeners run on a thread of their own (one per listener), never on the
        caller's thread, except that building a sampled ``GetChannelEvent``
        happens in ``get_channel``. A listener that raises is logged; one that
        blocks only delays (and past 10 000 pending, loses) its own events.
        """
        if self._closed:
            raise PoolClosed("pool is closed", self)
        if self._forked:
            self._revive()
        self._events.add(listener)
        self._change_pick()

    def remove_listener(self, listener: Listener) -> None:
        """Stop calling ``listener``; events already queued for it are delivered first."""
        self._events.remove(listener)
        self._change_pick()

    def _change_pick(self) -> None:
        """Readers' picker samples GetChannelEvents only while someone listens (and
        ``telemetry_sample_rate`` asks for it): the writer republishes it."""
        if not self._config.telemetry_sample_rate or self._closed or self._forked:
            return
        if threading.current_thread() is self._writer.thread:
            self._writer._set_pick()  # from a command running on the writer itself
            return
        reply = Reply()
        self._writer.queue.put(SetPick(reply))
        self._await(reply)

    def _get_slow(self, timeout: float | None, key: Hashable = None) -> PooledChannel:
        if timeout is not None:
            check_seconds("timeout", timeout)
        if key is not None:
            try:
                hash(key)
            except TypeError:
                raise InvalidConfig(
                    f"key={key!r} is not allowed: expected a hashable value (or None)", self
                ) from None
        if self._forked:
            self._revive()
        state = self._state if self._state.channels else self._wait_for(1, timeout or 0.0)
        if state is None:
            error = self._not_available(timeout)
            if timeout:
                logger.warning("%s", error)
            raise error
        if key is None:
            return _pick(state)
        # Rendezvous: the highest hash of (key, slot) among the ready channels.
        return max(state.channels, key=lambda channel: hash((key, channel.slot)))

    def _wait_for(
        self, count: int, timeout: float | None, while_starting: bool = False
    ) -> PoolState | None:
        """The state once it holds ``count`` channels, waiting up to ``timeout``
        seconds (None: until then or until the pool closes); None when the wait ran
        out, or (with ``while_starting``) as soon as a connection attempt has failed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._ready:  # the writer notifies after every publish: no polling
            while True:
                state = self._state
                if len(state.channels) >= count:
                    return state
                if self._closed:
                    raise PoolClosed("pool is closed", self)
                if while_starting and self._failed():
                    return None
                wait = _WAIT_TICK if deadline is None else deadline - time.monotonic()
                if wait <= 0:
                    return None
                self._ready.wait(min(wait, _WAIT_TICK))

    def _wait_channel(
        self, timeout: float | None, while_starting: bool = False
    ) -> PooledChannel | None:
        """A picked channel, waiting as ``_wait_for`` does for one; None when none came."""
        if self._forked:
            self._revive()
        state = self._wait_for(1, timeout, while_starting)
        return None if state is None else _pick(state)

    def _failed(self) -> bool:
        """Whether a slot has failed to connect or lost its connection (not starting)."""
        return any(
            view.connect_failures or view.last_error or view.state is SlotStatus.UNHEALTHY
            for view in self._state.views
        )

    def _not_available(self, timeout: float | None) -> NoChannelAvailable:
        views = self._state.views
        errors = sorted({v.last_error for v in views if v.last_error})
        detail = f"; last errors: {'; '.join(errors)}" if errors else ""
        waited = f" after waiting {timeout:g}s" if timeout else ""
        return NoChannelAvailable(f"no ready channel{waited}{detail}", self)

    def wait_ready(self, timeout: float = 10.0, min_ready: int = 1) -> PoolStatus:
        """Block until ``min_ready`` channels are ready; return the status then.

        timeout: seconds to wait. Default 10.0. Raises ``PoolTimeout`` when it runs out.
        min_ready: channels to wait for, 1..expected size. Default 1.
        """
        check_seconds("timeout", timeout)
        check_count("min_ready", min_ready, MAX_SIZE)
        if self._forked:
            self._revive()
        expected = self._state.expected
        if min_ready > expected and not self._closed:
            raise InvalidConfig(
                f"min_ready={min_ready!r} is not allowed: expected 1..{expected} "
                "(the pool's expected size)",
                self,
            )
        if self._wait_for(min_ready, timeout or 0.0) is None:
            error = PoolTimeout(
                f"{len(self._snapshot)} of {min_ready} channels ready after {timeout:g}s", self
            )
            logger.warning("%s", error)
            raise error
        return self.status()

    def status(self) -> PoolStatus:
        """Expected size, ready channels and "healthy" | "degraded" | "down"."""
        return pool_status(self._state)

    def stats(self) -> PoolStats:
        """A frozen snapshot per slot and in total; cheap enough for a health endpoint."""
        return pool_stats(self.name, self._config, self._state, self._events.dropped)

    @property
    def config(self) -> PoolConfig:
        return self._config

    # -- close ---------------------------------------------------------------------
    def close(self, grace: float = 5.0) -> None:
        """Stop handing out channels, let in-flight RPCs finish, close everything.

        grace: seconds RPCs in flight get to finish before their channel is
            closed (which cancels them). Default 5.0. Idempotent; joins every
            thread the pool started before returning.
        """
        check_seconds("grace", grace)
        with self._ready:
            already = self._closed
            self._closed = True
            self._ready.notify_all()
        _fork.untrack(self)
        if self._forked:  # a child that never used the pool: nothing of its own runs
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
        return self._closed

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        status = self.status()
        state = "closed" if self._closed else status.state
        return (
            f"<Pool {self.name!r} target={self._config.target_label!r} "
            f"ready={status.current_size}/{status.expected_size} state={state}>"
        )


def _pick(state: PoolState) -> PooledChannel:
    """A channel of ``state`` (which has some) through its bound picker."""
    pick = state.pick
    assert pick is not None  # bound whenever there are channels
    return pick()


def _abandon(commands: Any, events: Dispatcher) -> None:
    """A pool collected (or alive at exit) without close(): stop its threads."""
    commands.put(Close(0.0, Reply()))
    events.close()
