"""How workers learn their channels' connectivity: one watcher per pool.

grpcio's ``channel.subscribe()`` starts a polling thread per channel that wakes every
0.2 s (``grpc/_channel.py`` ``_poll_connectivity``) for as long as the channel lives:
with a pool of 8, 8 threads and about 1% of a core doing nothing, and a fork waits
for each of them to leave gRPC. ``PollWatch`` instead reads every watched channel's
state from one thread per pool, through grpcio's private
``Channel._channel.check_connectivity_state`` (a short C call under the channel's
lock, no waiting inside gRPC): every ``SLOW_TICK`` while nothing changes, every
``FAST_TICK`` (then slowing down again) after a change, a new channel or a reconnect
request. While every channel is READY and calm it sleeps instead on their sockets
(``sockets.py``, Linux), woken by the GOAWAY or close that ends a connection. Nothing
of it is inside gRPC between looks, so a fork only waits for the current look, and
closing a channel never waits for a poller. ``SubscribeWatch`` is the fallback,
grpcio's own pollers as before: on grpcio before 1.80 (there a channel's connection
moves on only while some thread polls gRPC: a state read alone saw a dead target
CONNECTING for ever on 1.60 and 1.78; from 1.80 the event engine's own threads drive
it), and for a channel whose private method cannot be read (a future grpcio).

Both deliver ``(channel id, state)`` to the worker's ``put`` whenever the state
differs from the last one delivered, starting with the current one.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Protocol

import grpc

from .._base.parking import Parking
from .._channel.pooled import PooledChannel
from . import sockets
from .inbox import Item

__all__ = [
    "FAST_TICK",
    "SLOW_TICK",
    "STATES",
    "PollWatch",
    "SubscribeWatch",
    "Watch",
    "make_watch",
    "polling_supported",
]

logger = logging.getLogger(__name__)

# Seconds between two looks at every channel while nothing changes: the longest a
# server's leaving (READY -> IDLE) goes unseen without an RPC; grpcio's own poller
# ticks at 0.2 s too.
SLOW_TICK = 0.2
# After a change, a new channel or a kick: look this soon, then twice as late each
# quiet tick, up to SLOW_TICK (a connection under way is seen within its own time).
FAST_TICK = 0.005
# The calm (no change, no stir) asked before sleeping on the sockets doubles from
# SLOW_TICK up to this each time they stir during a sleep (traffic: the watcher
# mostly ticks, as grpcio's poller would), and is none again after a quiet sleep.
CALM_MAX = 5.0
# Off only in tests that show the fallback (grpcio's subscribe pollers).
USE_PRIVATE_API = True
# Off only in tests that show ticking without sleeping on the sockets.
USE_SOCKETS = True
# The first grpcio whose channels connect without a thread polling gRPC (checked:
# 1.78.0 no, 1.80.0 yes; 1.79 was never released).
POLL_SINCE = (1, 80)

Put = Callable[[Item], None]
# grpcio's read: check(try_to_connect) -> the state's code (STATES maps it).
Check = Callable[[bool], int]
STATES: dict[int, grpc.ChannelConnectivity] = {c.value[0]: c for c in grpc.ChannelConnectivity}
_SHUTDOWN_CODE = grpc.ChannelConnectivity.SHUTDOWN.value[0]
_READY_CODE = grpc.ChannelConnectivity.READY.value[0]
_ARM_RETRY = (1.0, 60.0)  # seconds before arming again after a failure: first, most


class Watch(Protocol):
    """What a worker asks of the pool's watcher (and the fork of it: ``Parkable``)."""

    def watch(self, channel: PooledChannel, put: Put) -> None:
        """Deliver ``channel``'s states to ``put`` (its current one first) and ask it
        to connect."""

    def unwatch(self, channel: PooledChannel) -> None:
        """No more deliveries for ``channel`` (one under way may still arrive)."""

    def kick(self, channel: PooledChannel) -> None:
        """Ask an IDLE channel to connect, and look at it again soon."""

    def start(self) -> None:
        """Start watching (again: nothing)."""

    def stop(self) -> None: ...
    def join(self, deadline: float) -> None: ...
    def park(self) -> None: ...
    def parked(self, deadline: float) -> bool: ...
    def unpark(self) -> None: ...


def checker(raw: object) -> Check | None:
    """grpcio's private connectivity read of a channel (``grpc._channel.Channel._channel``,
    a ``cygrpc.Channel``; through wrappers that keep the real channel as ``_channel``,
    as OpenTelemetry's does): ``check(try_to_connect)`` -> the state's code (a key of
    ``STATES``); None when this grpcio has no such method or it answers something
    unknown."""
    channel = raw
    for _ in range(4):
        inner = getattr(channel, "_channel", None)
        if inner is None:
            return None
        read = getattr(inner, "check_connectivity_state", None)
        if callable(read):
            break
        channel = inner
    else:
        return None
    try:
        if read(False) not in STATES:
            return None
    except Exception:  # closed already, or another signature
        return None
    return read  # type: ignore[no-any-return]


def polling_supported(version: str | None = None) -> bool:
    """Whether this grpcio (or ``version``) is one ``PollWatch`` is used on."""
    text = version if version is not None else str(getattr(grpc, "__version__", ""))
    found = re.match(r"(\d+)\.(\d+)", text)
    return found is not None and (int(found[1]), int(found[2])) >= POLL_SINCE


def make_watch(pool_name: str) -> Watch:
    """The pool's watcher: ``PollWatch`` on grpcio >= 1.80 unless switched off
    (``USE_PRIVATE_API``); a channel it cannot read goes to ``SubscribeWatch``."""
    if USE_PRIVATE_API and polling_supported():
        return PollWatch(pool_name)
    return SubscribeWatch()


class _Watched:
    __slots__ = ("channel_id", "check", "last", "put", "target")

    def __init__(self, channel_id: str, target: str, check: Check, put: Put) -> None:
        self.channel_id, self.target, self.check, self.put = channel_id, target, check, put
        self.last = -1  # the code last delivered; none yet


class PollWatch:
    """One thread per pool reads every watched channel's state each tick; while all
    are READY and calm, it sleeps on their sockets instead (``sockets.SocketWake``)."""

    def __init__(self, pool_name: str) -> None:
        self._pool_name = pool_name
        self._lock = threading.Lock()
        self._watched: dict[str, _Watched] = {}  # by channel id
        self._looked: tuple[_Watched, ...] = ()  # its values, for the thread's looks
        self._fallback: SubscribeWatch | None = None  # channels it cannot read
        self._wake = sockets.SocketWake() if USE_SOCKETS and sockets.available() else None
        # Rung to end the thread's wait early.
        self._bell: sockets.SocketWake | sockets.LockBell = self._wake or sockets.LockBell()
        self._armed = False  # the sockets of ``_armed_for`` (another tuple: find anew)
        self._armed_for: tuple[_Watched, ...] = ()
        self._arm_retry = (0.0, _ARM_RETRY[0])  # after a failed arm: when, then how long
        self._calm = 0.0  # seconds without a change or a stir before sleeping on sockets
        self.socket_sleeps = 0  # how often it slept on the sockets (tests, docs)
        self._hurry = False  # a new channel or a kick: look again at FAST_TICK
        self._stopped = False
        self._parking = Parking()
        self.thread = threading.Thread(
            target=self._run, name=f"grpc_pool-watch-{pool_name}", daemon=True
        )

    def start(self) -> None:
        """Start the thread unless it runs (or ran) already."""
        if self.thread.ident is None and not self._stopped:
            self.thread.start()

    def stop(self) -> None:
        self._stopped = True
        self._parking.release()
        self._bell.ring()
        if self.thread.ident is None:  # never ran: nothing else closes the bell
            self._bell.close()

    def join(self, deadline: float) -> None:
        if self.thread.ident is not None:
            self.thread.join(max(0.0, deadline - time.monotonic()))

    # -- for workers ---------------------------------------------------------------
    def watch(self, channel: PooledChannel, put: Put) -> None:
        check = checker(channel._raw)
        if check is None:
            self._subscribe_instead().watch(channel, put)
            return
        with self._lock:
            entry = _Watched(channel.channel_id, channel.target, check, put)
            self._watched[channel.channel_id] = entry
            self._looked = tuple(self._watched.values())
        self.kick(channel)

    def unwatch(self, channel: PooledChannel) -> None:
        with self._lock:
            found = self._watched.pop(channel.channel_id, None)
            self._looked = tuple(self._watched.values())
        if found is None and self._fallback is not None:
            self._fallback.unwatch(channel)

    def kick(self, channel: PooledChannel) -> None:
        with self._lock:
            found = self._watched.get(channel.channel_id)
        if found is None:
            if self._fallback is not None:
                self._fallback.kick(channel)
            return
        with contextlib.suppress(ValueError):  # closed meanwhile: the next look says SHUTDOWN
            found.check(True)  # on the caller's thread (a worker): a short C call
        self._hurry = True
        self._bell.ring()

    def _subscribe_instead(self) -> SubscribeWatch:
        with self._lock:
            if self._fallback is None:
                logger.warning(
                    "pool %s: grpcio %s has no readable Channel._channel."
                    "check_connectivity_state; watching with grpcio's subscribe() pollers",
                    self._pool_name,
                    getattr(grpc, "__version__", "?"),
                )
                self._fallback = SubscribeWatch()
            return self._fallback

    # -- fork (Parkable) -----------------------------------------------------------
    def park(self) -> None:
        self._parking.request()
        self._bell.ring()
        if self._fallback is not None:
            self._fallback.park()

    def parked(self, deadline: float) -> bool:
        if self._fallback is not None and not self._fallback.parked(deadline):
            return False
        return self._parking.wait(deadline, self.thread)

    def unpark(self) -> None:
        self._parking.release()
        if self._fallback is not None:
            self._fallback.unpark()

    # -- thread --------------------------------------------------------------------
    def _run(self) -> None:
        tick, calm_since = FAST_TICK, time.monotonic()
        try:
            while not self._stopped:
                if self._parking.wanted:
                    self._parking.park_here()
                    continue
                hurry, self._hurry = self._hurry, False  # before the look: a later kick counts
                now = time.monotonic()
                if self._look() or hurry:  # connections may be new or gone: find them anew
                    tick, calm_since, self._armed_for = FAST_TICK, now, ()
                else:
                    tick = min(SLOW_TICK, tick * 2)
                if not self._looked:  # nothing to look at: until a watch, a park or the stop
                    self._bell.wait(None)
                elif tick < SLOW_TICK or now - calm_since < self._calm or not self._can_sleep():
                    self._bell.wait(tick)
                elif self._sleep():  # a socket stirred: look now, then from FAST_TICK on
                    tick, calm_since = FAST_TICK / 2, time.monotonic()
        finally:
            self._bell.close()
        self._parking.ended()

    def _can_sleep(self) -> bool:
        """Whether every watched channel is READY with every connection armed."""
        try:
            return self._arm()
        except Exception:  # never end the thread: tick instead, as off Linux
            self._give_up_sleeping()
            return False

    def _arm(self) -> bool:
        wake, looked = self._wake, self._looked
        if wake is None or any(entry.last != _READY_CODE for entry in looked):
            return False
        if self._armed_for is looked:
            if self._armed:
                if wake.rearm():
                    return True
            elif time.monotonic() < self._arm_retry[0]:
                return False
        self._armed = wake.arm(dict(Counter(entry.target for entry in looked)))
        self._armed_for = looked
        wait = self._arm_retry[1]
        if self._armed:
            self._arm_retry = (0.0, _ARM_RETRY[0])
        else:  # channelz off, a Unix socket, a connection closing: poll, try later
            self._arm_retry = (time.monotonic() + wait, min(_ARM_RETRY[1], 2 * wait))
        return self._armed

    def _sleep(self) -> bool:
        """Sleep on the sockets (up to ``sockets.SWEEP``); whether one stirred."""
        assert self._wake is not None  # _can_sleep said so
        self.socket_sleeps += 1
        try:
            stirred = self._wake.sleep(sockets.SWEEP)
        except Exception:
            self._give_up_sleeping()
            return True  # look now
        self._calm = min(CALM_MAX, max(SLOW_TICK, 2 * self._calm)) if stirred else 0.0
        return stirred

    def _give_up_sleeping(self) -> None:
        logger.exception("pool %s: sleeping on the connections failed; ticking", self._pool_name)
        wake, self._wake = self._wake, None
        if wake is not None:
            wake.forget()  # the bell goes on

    def _look(self) -> bool:
        """Every watched channel's state; the changes delivered. Whether any changed."""
        changed = False
        for entry in self._looked:
            try:
                state = entry.check(False)
            except ValueError:  # closed: its worker has let it go already
                state = _SHUTDOWN_CODE
            except Exception:  # never end the thread: the others' states still matter
                if entry.last != _SHUTDOWN_CODE:  # once: its worker replaces the channel
                    logger.exception("pool %s: reading a channel's state failed", self._pool_name)
                state = _SHUTDOWN_CODE
            if state != entry.last:
                entry.last = state
                entry.put((entry.channel_id, STATES.get(state, grpc.ChannelConnectivity.SHUTDOWN)))
                changed = True
        return changed


class SubscribeWatch:
    """The fallback: grpcio's ``subscribe()``, one polling thread per channel.

    Parking drops every subscription (grpcio's poller ends within two 0.2 s ticks;
    ``parked`` waits for it on the forking thread) and ``unpark`` subscribes again."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._callbacks: dict[PooledChannel, Callable[[grpc.ChannelConnectivity], None]] = {}
        self._paused = False  # between park and unpark: subscribed on unpark

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def join(self, deadline: float) -> None:
        pass

    def watch(self, channel: PooledChannel, put: Put) -> None:
        channel_id = channel.channel_id

        def on_state(state: grpc.ChannelConnectivity) -> None:  # on grpcio's thread
            put((channel_id, state))

        with self._lock:
            self._callbacks[channel] = on_state
            if not self._paused:
                channel.subscribe(on_state, try_to_connect=True)

    def unwatch(self, channel: PooledChannel) -> None:
        with self._lock:
            callback = self._callbacks.pop(channel, None)
        if callback is not None:
            channel.unsubscribe(callback)

    def kick(self, channel: PooledChannel) -> None:
        channel._kick()

    def park(self) -> None:
        with self._lock:
            self._paused = True
            for channel, callback in self._callbacks.items():
                channel.unsubscribe(callback)

    def parked(self, deadline: float) -> bool:
        with self._lock:
            channels = list(self._callbacks)
        return all([c._wait_for_poller(deadline) for c in channels])

    def unpark(self) -> None:
        with self._lock:
            if not self._paused:
                return
            self._paused = False
            for channel, callback in self._callbacks.items():
                channel.subscribe(callback, try_to_connect=True)
