"""Who owns a channel: one worker thread per slot connects, watches, reconnects."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable

import grpc

from .._base.backoff import Backoff
from .._base.parking import Parking
from .._channel.build import build_channel
from .._channel.pooled import PooledChannel, Reroute
from .._config.config import PoolConfig
from .._contract import commands as cmd
from .._contract.state import SlotStatus
from . import health
from .health import HealthStatus
from .inbox import EJECT, GRANT, LOST, MOVED, MOVED_REASON, PAUSE, REFRESH, Item, Move, Signal
from .upkeep import Upkeep
from .watch import Watch

__all__ = ["Worker"]

logger = logging.getLogger(__name__)

_C = grpc.ChannelConnectivity
_READY, _IDLE, _LOST = _C.READY, _C.IDLE, (_C.TRANSIENT_FAILURE, _C.SHUTDOWN, LOST)
_TICK = 30.0  # longest single wait: a stop flag is seen even if a wake-up were lost (idle: rare)


class Worker:
    """Owns one slot: builds its channel, waits for READY (and a health check's
    answer when configured), registers it with the writer, watches connectivity,
    reports a loss and reconnects with backoff.

    Health: a server that answers but not SERVING keeps its connection; the slot
    is out of rotation (``cmd.Register(serving=False)``, then ``HealthResult``) and is
    checked again at the interval. Only a check without an answer (timeout,
    UNAVAILABLE) counts as a lost connection.

    Ownership: a channel is the worker's until it posts ``Register``; from then
    on the writer retires and closes it. A worker never gives up; it ends only
    when ``stop()`` is called. ``park()`` parks it outside gRPC (before fork).

    Connectivity: the pool's ``Watch`` delivers its channel's states to the
    worker's queue (``watch``/``unwatch``; ``kick`` asks an IDLE channel to
    connect); RPC outcomes on the channel (a failed pick, UNAVAILABLE in a row)
    reach the same queue at once.
    """

    def __init__(
        self,
        slot: int,
        watch: Watch,
        config: PoolConfig,
        credentials: grpc.ChannelCredentials | None,
        pool_name: str,
        post: Callable[[object], None],
        close: Callable[[PooledChannel], None],
        dial: Callable[[str | None], PoolConfig] | None = None,
        reroute: Reroute | None = None,
    ) -> None:
        self.slot = slot
        self._close = close  # a channel never published: to the pool's reaper
        self._watch_of = watch  # the pool's connectivity watcher
        # Spreading: the config of the assigned address; the slot waits for its
        # first address before connecting. None: the pool's target.
        self._dial = dial
        self._placed = dial is None
        self._address: str | None = None
        self._watching, self._config = False, config
        self._pool_name = pool_name
        self._build = (credentials, slot, pool_name, reroute)  # build_channel's
        self._post = post
        # Connectivity changes (from gRPC's thread) and the writer's signals.
        self._inbox: queue.SimpleQueue[Item] = queue.SimpleQueue()
        self._stopped = False
        self._failures = 0
        c = config
        self._backoff = Backoff(
            c.backoff_initial, c.backoff_multiplier, c.backoff_jitter, c.backoff_max
        )
        self._upkeep = Upkeep(config)
        self._refresh_wanted = False
        self._parking = Parking()
        self.thread = threading.Thread(
            target=self._run, name=f"grpc_pool-worker-{pool_name}-{slot}", daemon=True
        )

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        """Ask the thread to end; safe from any thread, returns at once."""
        self._stopped = True
        self._parking.release()
        self._upkeep.stop()  # do not wait for a health check's timeout
        self._inbox.put(None)

    # -- fork (Parkable) -------------------------------------------------------
    def park(self) -> None:
        self._parking.request()
        self._inbox.put(PAUSE)

    def parked(self, deadline: float) -> bool:
        return self._parking.wait(deadline, self.thread)

    def unpark(self) -> None:
        self._parking.release()

    def move(self, address: str | None) -> None:
        """From the writer: use ``address``; a connected slot swaps warm (as a refresh)."""
        self._inbox.put(Move(address))

    def grant_refresh(self) -> None:
        """From the writer: this slot may replace its channel now."""
        self._inbox.put(GRANT)

    # -- thread ----------------------------------------------------------------
    def _run(self) -> None:
        while not self._stopped:
            try:
                self._one_connection()
            except Exception as exc:  # a bug or a factory error must not end the slot
                logger.exception("pool %s slot %d: unexpected error", self._pool_name, self.slot)
                self._fail(f"{type(exc).__name__}: {exc}")
        self._parking.ended()
        logger.debug("pool %s slot %d: worker stopped", self._pool_name, self.slot)

    def _one_connection(self) -> None:
        self._post(cmd.Progress(self, self.slot, SlotStatus.CONNECTING))
        while not self._placed and not self._stopped:
            self._next_state("", None)  # until the writer sends the first address
        connected = self._connect()
        if isinstance(connected, str):
            if not self._stopped and connected != MOVED_REASON:
                self._fail(connected)
            return
        channel, took, serving = connected
        self._failures = 0
        self._post(cmd.Register(self, self.slot, channel, took, serving))
        up_since = time.monotonic()
        refresh_at = self._upkeep.age_deadline(up_since)
        try:
            while True:
                self._watching = True  # a move now swaps warm (_replace posts RefreshDone)
                try:
                    reason, healthy = self._watch(channel, refresh_at, serving)
                finally:
                    self._watching = False
                if reason != REFRESH:
                    break
                replacement = self._replace(channel)
                if replacement is None:  # keep the old one; try again after a backoff
                    refresh_at = time.monotonic() + self._backoff.next_delay()
                    continue
                channel, serving = replacement
                up_since = time.monotonic()
                refresh_at = self._upkeep.age_deadline(up_since)
        finally:
            self._watch_of.unwatch(channel)  # before any close
        if reason is None:  # stopped: the writer retires the registered channel
            return
        if healthy and time.monotonic() - up_since >= self._config.backoff_initial:
            self._backoff.reset()  # it was stable: reconnect at once
            delay = 0.0
        else:
            delay = self._backoff.next_delay()  # flapping or unhealthy: keep backing off
        self._post(cmd.Lost(self, self.slot, channel, reason, delay))
        self._log(logging.INFO, "connection lost (%s)", reason)
        if delay:
            self._sleep(delay)

    def _connect(self) -> tuple[PooledChannel, float, bool] | str:
        """A new channel READY, watched, its health check answered, primed when
        SERVING: (channel, seconds taken, serving); else why not (closed)."""
        started = time.monotonic()
        config = self._config if self._dial is None else self._dial(self._address)
        channel = build_channel(config, *self._build)
        self._listen(channel)
        self._watch_of.watch(channel, self._inbox.put)
        error: str | None = "stopped"
        serving = True
        try:
            error = self._wait_ready(channel)
            if error is None:
                result = self._check_health(channel)
                error = health.no_answer(result)
                serving = health.serving(result)
            if error is None and serving:  # a NOT_SERVING one is primed once it serves
                error = self._upkeep.prime(channel)
        finally:
            if error is not None:
                self._watch_of.unwatch(channel)
                self._discard(channel)
        if error is not None:
            return error
        return channel, time.monotonic() - started, serving

    def _replace(self, old: PooledChannel) -> tuple[PooledChannel, bool] | None:
        """Max-age refresh or move (the writer granted it): connect a new channel while
        the old one serves, then swap them in one cmd.Register (the writer retires the old)."""
        try:
            connected = None if self._stopped else self._connect()
            if connected is None or isinstance(connected, str):
                if connected is not None:
                    self._log(logging.INFO, "refresh failed (%s); keeping the channel", connected)
                # Events of the old channel were skipped meanwhile: watching it
                # again delivers its current state again.
                self._watch_of.unwatch(old)
                self._watch_of.watch(old, self._inbox.put)
                return None
            channel, took, serving = connected
            self._post(cmd.Register(self, self.slot, channel, took, serving))
            self._watch_of.unwatch(old)
            self._backoff.reset()
            return channel, serving
        finally:
            self._post(cmd.RefreshDone(self, self.slot))

    def _check_health(self, channel: PooledChannel) -> tuple[HealthStatus, float] | None:
        """A health check of a new channel, posted to the writer when it ran."""
        result = self._upkeep.check_health(channel)
        if result is not None:
            self._post(cmd.HealthResult(self, self.slot, channel, *health.verdict(result)))
        return result

    def _discard(self, channel: PooledChannel) -> None:
        """Close a channel never published (no caller can hold it)."""
        channel._shut()
        self._close(channel)

    def _listen(self, channel: PooledChannel) -> None:
        """RPC outcomes on ``channel`` that reach this worker's queue at once."""
        put, channel_id = self._inbox.put, channel.channel_id
        counter = channel._counter
        if counter is not None:  # an RPC's failed pick: lost now, not at the next tick
            counter.on_lost = lambda: put((channel_id, LOST))
            if self._config.eject_after_unavailable:
                counter.on_unavailable = lambda: put((channel_id, EJECT))

    def _next_state(
        self, channel_id: str, deadline: float | None
    ) -> grpc.ChannelConnectivity | Signal | None:
        """The next state (or ejection) of this channel; None on stop or at ``deadline``."""
        while not self._stopped:
            wait = _TICK if deadline is None else min(_TICK, deadline - time.monotonic())
            if wait <= 0:
                return None
            try:
                item = self._inbox.get(timeout=wait)
            except queue.Empty:
                continue
            if item is None:
                return None
            if item is PAUSE:
                self._parking.park_here()  # the watcher parks its own thread
                continue
            if item is GRANT:
                if self._refresh_wanted:
                    self._refresh_wanted = False
                    return GRANT
                self._post(cmd.RefreshDone(self, self.slot))  # moved on meanwhile: hand it back
                continue
            if isinstance(item, Move):
                self._address, self._placed = item.address, True
                if not self._watching:  # nothing to swap: the next attempt uses it
                    self._post(cmd.RefreshDone(self, self.slot))
                return MOVED
            if isinstance(item, tuple) and item[0] == channel_id:
                return item[1]
        return None

    def _wait_ready(self, channel: PooledChannel) -> str | None:
        """None when READY; else why not (stop, failure, connect timeout)."""
        timeout = self._config.connect_timeout
        deadline = time.monotonic() + timeout
        while True:
            state = self._next_state(channel.channel_id, deadline)
            if state is None:
                return "stopped" if self._stopped else f"not READY within {timeout:g}s"
            if state is _READY:
                return None
            if state is MOVED:
                return MOVED_REASON
            if state in _LOST:
                return f"{state.name} while connecting: {channel._why_not_connected()}"
            if state is _IDLE:
                self._watch_of.kick(channel)

    def _watch(
        self, channel: PooledChannel, refresh_at: float | None, serving: bool
    ) -> tuple[str | None, bool]:
        """Block while the channel's connection is usable (serving or not).
        Returns (why it was lost, whether it was healthy until then); (None, True)
        on stop; (REFRESH, True) once a max-age refresh was granted.
        """
        primed = serving
        timeout = self._config.connect_timeout
        interval = self._config.health_check_interval
        reconnect_deadline: float | None = None  # set while reconnecting after IDLE
        next_health = time.monotonic() + interval if interval else None
        while True:
            deadlines = [d for d in (reconnect_deadline, next_health, refresh_at) if d is not None]
            state = self._next_state(channel.channel_id, min(deadlines) if deadlines else None)
            if state is None:
                if self._stopped:
                    return None, True
                now = time.monotonic()
                if reconnect_deadline is not None and now >= reconnect_deadline:
                    return f"no connection within {timeout:g}s after going IDLE", True
                if next_health is not None and now >= next_health:
                    result = self._upkeep.check_health(channel)
                    error = health.no_answer(result)
                    serving = health.serving(result)
                    if error is None and serving and not primed:  # before it is back in rotation
                        error = self._upkeep.prime(channel)
                        primed = error is None
                    if self._stopped:
                        return None, True
                    if error is not None:
                        return error, False
                    if result is not None:  # the writer takes it out or puts it back
                        self._post(
                            cmd.HealthResult(self, self.slot, channel, *health.verdict(result))
                        )
                    next_health = time.monotonic() + interval
                if refresh_at is not None and now >= refresh_at:
                    self._refresh_wanted = True
                    self._post(cmd.RefreshRequest(self, self.slot))  # one slot at a time
                    refresh_at = None
                continue
            if state is GRANT or state is MOVED:
                return REFRESH, True
            if state is EJECT:
                n = self._config.eject_after_unavailable
                return f"ejected after {n} RPCs in a row failed UNAVAILABLE", False
            if state is _READY:
                if reconnect_deadline is not None:  # reconnected after IDLE: a new connection
                    took = time.monotonic() - (reconnect_deadline - timeout)
                    self._post(cmd.Register(self, self.slot, channel, took, serving))
                reconnect_deadline = None
            elif state in _LOST:
                return state.name, True
            elif reconnect_deadline is None:  # IDLE (idle timeout or GOAWAY) or CONNECTING
                reconnect_deadline = time.monotonic() + timeout
                why = "connection closed (GOAWAY, reset or idle timeout)"
                if state is not _IDLE:
                    why = f"connection went {state}"
                self._post(cmd.Progress(self, self.slot, SlotStatus.RECONNECTING, error=why))
            if state is _IDLE:
                self._watch_of.kick(channel)  # judged by what follows: READY keeps it

    def _fail(self, error: str) -> None:
        delay = self._backoff.next_delay()
        self._failures += 1
        self._post(cmd.Progress(self, self.slot, SlotStatus.BACKOFF, error=error, delay=delay))
        # The first failure in a row is news; the repeats of an outage are noise.
        level = logging.WARNING if self._failures == 1 else logging.DEBUG
        self._log(level, "cannot connect (%s); retrying in %.2fs", error, delay)
        self._sleep(delay)

    def _log(self, level: int, message: str, *args: object) -> None:
        if self._config.suppress_connection_errors:
            level = logging.DEBUG
        if logger.isEnabledFor(level):
            logger.log(level, "pool %s slot %d: " + message, self._pool_name, self.slot, *args)

    def _sleep(self, delay: float) -> None:
        # No channel has id "": this returns on stop or when the delay is over.
        self._next_state("", time.monotonic() + delay)
