"""The one reader API: every reader (``get_channel``, ``pool.channel``'s RPCs,
``status()``/``stats()``, the exporters, the CLI) reads the published state here,
once per call, and waits on the generation it read.

The writer publishes by ``publish``: one reference swap, then the superseded
state's event is set, which wakes whoever waited on it (grpc-go's picker
wrapper closes the old generation's channel the same way). No shared condition:
nothing to hand around or rebuild after a fork.
"""

from __future__ import annotations

import itertools
import logging
import time
import weakref
from collections.abc import Callable, Hashable

import grpc

from .._base.errors import InvalidConfig, NoChannelAvailable, PoolClosed
from .._channel.pooled import PooledChannel
from .._config.config import PoolConfig
from .._config.validate import check_seconds
from .._contract.state import PoolState, SlotStatus
from .hints import port_hint, tls_hint

__all__ = ["Reader", "State", "failed", "pick"]

logger = logging.getLogger(__name__)

State = PoolState[PooledChannel]
# Longest single wait for a newer state: a lost wake-up costs at most this.
_WAIT_TICK = 5.0
_Connectivity = grpc.ChannelConnectivity


def _nothing() -> None:
    pass


class Reader:
    """The published state and the reads of it.

    state: the last published ``PoolState`` (read it once per call). closed: set by
    the pool's ``close()``. revive: the one revive point after a fork, set by the
    pool (a forked child's state says ``forked``; the first use calls it).
    on_publish: called on the writer's thread after each publish (never blocks).
    """

    __slots__ = (
        "_outage",
        "_owner",
        "_timeouts",
        "closed",
        "config",
        "hedges",
        "hedges_won",
        "on_publish",
        "policy_retries",
        "retries",
        "revive",
        "state",
    )

    def __init__(self, config: PoolConfig, owner: object) -> None:
        self.state: State = PoolState()
        self.config = config
        self.closed = False
        self.revive: Callable[[], None] = _nothing
        self.on_publish: Callable[[], None] | None = None
        self._owner = weakref.ref(owner)  # errors name the pool; never keep it alive
        # Timed-out get_channel(timeout=...) calls of the current outage: next() is
        # atomic, so exactly one caller draws 1 and logs the WARNING; no lock to
        # rebuild after a fork. The writer's publish of a ready channel ends it.
        self._timeouts = itertools.count(1)
        self._outage = False
        # RPCs sent again on another channel: transparently (never reached a
        # server) and by PoolConfig.retry; next() is atomic, read by read_count.
        self.retries = itertools.count()
        self.policy_retries = itertools.count()
        # Hedged attempts sent (PoolConfig.hedging), and those that answered first.
        self.hedges = itertools.count()
        self.hedges_won = itertools.count()

    @property
    def owner(self) -> object | None:
        return self._owner()

    # -- the writer's side -------------------------------------------------------------
    def publish(self, state: State) -> None:
        last, self.state = self.state, state
        last.superseded.set()
        if self._outage and state.channels:
            self._end_outage()
        wake = self.on_publish
        if wake is not None:
            wake()

    def _end_outage(self) -> None:
        self._outage = False
        ended, self._timeouts = self._timeouts, itertools.count(1)
        count = next(ended) - 1
        if count:
            logger.info(
                "%s: a channel is ready again; %d get_channel(timeout=...) call(s) timed "
                "out while none was",
                self.owner,
                count,
            )

    def _timed_out(self, error: NoChannelAvailable) -> None:
        """One WARNING per outage, the later timeouts at DEBUG (and counted)."""
        first = next(self._timeouts) == 1
        self._outage = True
        if first:
            logger.warning("%s (later timeouts while no channel is ready: DEBUG)", error)
        else:
            logger.debug("%s", error)

    def close(self) -> None:
        """No more channels for anyone; waiters on this generation wake and see it."""
        self.closed = True
        self.state.superseded.set()
        wake = self.on_publish
        if wake is not None:
            wake()

    # -- readers -----------------------------------------------------------------------
    def get(self, timeout: float | None, key: Hashable, state: State) -> PooledChannel:
        """``get_channel``'s slow path over the ``state`` it read: wait (``timeout``)
        for a newer one, raise, rebuild after fork, or pick by ``key``."""
        if timeout is not None:
            check_seconds("timeout", timeout)
        if key is not None:
            try:
                hash(key)
            except TypeError:
                raise InvalidConfig(
                    f"key={key!r} is not allowed: expected a hashable value (or None)", self.owner
                ) from None
        if not state.channels:
            found = self.wait_for(1, timeout or 0.0)
            if found is None:
                error = self.not_available(timeout)
                if timeout:
                    self._timed_out(error)
                raise error
            state = found
        if key is None:
            return pick(state)
        # Rendezvous: the highest hash of (key, slot) among the ready channels.
        return max(state.channels, key=lambda channel: hash((key, channel.slot)))

    def wait_for(
        self, count: int, timeout: float | None, while_starting: bool = False
    ) -> State | None:
        """The state once it holds ``count`` channels, waiting up to ``timeout``
        seconds (None: until then or until the pool closes); None when the wait ran
        out, or (with ``while_starting``) as soon as a connection attempt has failed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self.closed:
                raise PoolClosed("pool is closed", self.owner)
            state = self.state
            if state.forked:
                self.revive()
                continue
            if len(state.channels) >= count:
                return state
            if while_starting and failed(state):
                return None
            wait = _WAIT_TICK if deadline is None else deadline - time.monotonic()
            if wait <= 0:
                return None
            state.superseded.wait(min(wait, _WAIT_TICK))

    def wait_channel(
        self, timeout: float | None, while_starting: bool = False
    ) -> PooledChannel | None:
        """A picked channel, waiting as ``wait_for`` does for one; None when none came."""
        state = self.wait_for(1, timeout, while_starting)
        return None if state is None else pick(state)

    def not_available(
        self, timeout: float | None, state: State | None = None
    ) -> NoChannelAvailable:
        waited = f" after waiting {timeout:g}s" if timeout else ""
        return NoChannelAvailable(f"no ready channel{waited}{self.why(state)}", self.owner)

    def why(self, state: State | None = None) -> str:
        """ "; last errors: ..." of the slots (and "; hint: ..." when they look like TLS
        against plaintext or back, or the target has no port), or "": what no-channel
        errors carry."""
        views = (state or self.state).views
        errors = sorted({v.last_error for v in views if v.last_error})
        hints = (
            tls_hint(
                errors, self.config.insecure, to_plaintext="insecure=True", to_tls="insecure=False"
            ),
            # With a resolver, its addresses carry the ports: the target is its to read.
            port_hint(self.config.target) if self.config.resolver is None else "",
        )
        said = f"; last errors: {'; '.join(errors)}" if errors else ""
        return said + "".join(f"; hint: {h}" for h in hints if h)

    def connectivity(self) -> grpc.ChannelConnectivity:
        """The pool's state as one channel's: READY while any channel is ready."""
        if self.closed:
            return _Connectivity.SHUTDOWN
        state = self.state
        if state.channels:
            return _Connectivity.READY
        if failed(state):
            return _Connectivity.TRANSIENT_FAILURE
        return _Connectivity.CONNECTING

    def in_flight(self) -> int:
        """RPCs in flight on the published and retiring channels (counted ones)."""
        state = self.state
        return sum(c.in_flight or 0 for c in (*state.channels, *state.retired))


def pick(state: State) -> PooledChannel:
    """A channel of ``state`` (which has some) through its bound picker."""
    chosen = state.pick
    assert chosen is not None  # bound whenever there are channels
    return chosen()


def failed(state: State) -> bool:
    """Whether a slot has failed to connect or lost its connection (not starting)."""
    return any(
        view.connect_failures or view.last_error or view.state is SlotStatus.UNHEALTHY
        for view in state.views
    )
