"""Who owns a channel: one worker thread per slot connects, watches, reconnects."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable

import grpc

from ._backoff import Backoff
from ._channel import PooledChannel, build_channel
from ._commands import Lost, Register, SlotState
from ._config import PoolConfig

__all__ = ["Worker"]

logger = logging.getLogger(__name__)

_READY = grpc.ChannelConnectivity.READY
_IDLE = grpc.ChannelConnectivity.IDLE
_CONNECTING = grpc.ChannelConnectivity.CONNECTING
_LOST = (grpc.ChannelConnectivity.TRANSIENT_FAILURE, grpc.ChannelConnectivity.SHUTDOWN)
_Event = tuple[str, grpc.ChannelConnectivity]
# Longest single wait, so a stop flag is seen even if a wake-up were lost.
_TICK = 5.0


def _noop(_state: grpc.ChannelConnectivity) -> None:
    pass


def _kick(channel: PooledChannel) -> None:
    """Ask an IDLE channel to connect: the subscription poller sees try_to_connect."""
    channel.subscribe(_noop, try_to_connect=True)
    channel.unsubscribe(_noop)


class Worker:
    """Owns one slot: builds its channel, waits for READY, registers it with the
    writer, watches connectivity, reports a loss and reconnects with backoff.

    Ownership: a channel is the worker's until it posts ``Register``; from then
    on the writer retires and closes it. A worker never gives up; it ends only
    when ``stop()`` is called.
    """

    def __init__(
        self,
        slot: int,
        config: PoolConfig,
        credentials: grpc.ChannelCredentials | None,
        pool_name: str,
        post: Callable[[object], None],
    ) -> None:
        self.slot = slot
        self._config = config
        self._credentials = credentials
        self._pool_name = pool_name
        self._post = post
        self._events: queue.SimpleQueue[_Event | None] = queue.SimpleQueue()  # None: stop
        self._stopped = False
        self._failures = 0
        self._backoff = Backoff(
            config.backoff_initial,
            config.backoff_multiplier,
            config.backoff_jitter,
            config.backoff_max,
        )
        self.thread = threading.Thread(
            target=self._run, name=f"grpc_pool-worker-{pool_name}-{slot}", daemon=True
        )

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        """Ask the thread to end; safe from any thread, returns at once."""
        self._stopped = True
        self._events.put(None)

    # -- thread ----------------------------------------------------------------
    def _run(self) -> None:
        while not self._stopped:
            try:
                self._one_connection()
            except Exception as exc:  # a bug or a factory error must not end the slot
                logger.exception("pool %s slot %d: unexpected error", self._pool_name, self.slot)
                self._fail(f"{type(exc).__name__}: {exc}")
        logger.debug("pool %s slot %d: worker stopped", self._pool_name, self.slot)

    def _one_connection(self) -> None:
        self._post(SlotState(self, self.slot, "connecting"))
        started = time.monotonic()
        channel = build_channel(self._config, self._credentials, self.slot, self._pool_name)
        callback = self._subscriber(channel.channel_id)
        channel.subscribe(callback, try_to_connect=True)
        registered = False
        try:
            error = self._wait_ready(channel)
            if error is None:
                self._failures = 0
                self._post(Register(self, self.slot, channel, time.monotonic() - started))
                registered = True
                up_since = time.monotonic()
                reason = self._watch(channel)
        finally:
            channel.unsubscribe(callback)  # before any close: see PooledChannel._close
            if not registered:
                channel._close()  # never published: no caller can hold it
        if error is not None:
            if not self._stopped:
                self._fail(error)
            return
        if reason is None:  # stopped: the writer retires the registered channel
            return
        if time.monotonic() - up_since >= self._config.backoff_initial:
            self._backoff.reset()  # it was stable: reconnect at once
            delay = 0.0
        else:
            delay = self._backoff.next_delay()  # flapping: keep backing off
        self._post(Lost(self, self.slot, channel, reason, delay))
        self._log(logging.INFO, "connection lost (%s)", reason)
        if delay:
            self._sleep(delay)

    def _subscriber(self, channel_id: str) -> Callable[[grpc.ChannelConnectivity], None]:
        put = self._events.put

        # Runs on gRPC's delivery thread: hand the state over, never block.
        def on_state(state: grpc.ChannelConnectivity) -> None:
            put((channel_id, state))

        return on_state

    def _next_state(
        self, channel_id: str, deadline: float | None
    ) -> grpc.ChannelConnectivity | None:
        """The next state of this channel; None on stop or when ``deadline`` passes."""
        while not self._stopped:
            wait = _TICK if deadline is None else min(_TICK, deadline - time.monotonic())
            if wait <= 0:
                return None
            try:
                item = self._events.get(timeout=wait)
            except queue.Empty:
                continue
            if item is None:
                return None
            cid, state = item
            if cid == channel_id:
                return state
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
            if state in _LOST:
                return f"{state.name} while connecting"
            if state is _IDLE:
                _kick(channel)

    def _watch(self, channel: PooledChannel) -> str | None:
        """Block while the channel is usable; return why it was lost, None on stop."""
        timeout = self._config.connect_timeout
        deadline: float | None = None  # set while reconnecting after IDLE
        while True:
            state = self._next_state(channel.channel_id, deadline)
            if state is None:
                if self._stopped:
                    return None
                return f"no connection within {timeout:g}s after going IDLE"
            if state is _READY:
                if deadline is not None:  # reconnected after IDLE: a new connection
                    took = time.monotonic() - (deadline - timeout)
                    self._post(Register(self, self.slot, channel, took))
                deadline = None
            elif state in _LOST:
                return state.name
            elif deadline is None:  # IDLE (idle timeout or GOAWAY) or CONNECTING
                deadline = time.monotonic() + timeout
                self._post(SlotState(self, self.slot, "reconnecting"))
            if state is _IDLE:
                _kick(channel)  # judge by what follows: READY keeps it, a failure loses it

    def _fail(self, error: str) -> None:
        delay = self._backoff.next_delay()
        self._failures += 1
        self._post(SlotState(self, self.slot, "backoff", error=error, delay=delay))
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
