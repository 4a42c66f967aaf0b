"""Who writes the snapshot: the writer thread, sole owner of the channel layout."""

from __future__ import annotations

import logging
import queue
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import grpc

from ._channel import PooledChannel
from ._commands import (
    Call,
    Close,
    HealthResult,
    Lost,
    Pause,
    Progress,
    RefreshDone,
    RefreshRequest,
    Register,
    Reply,
    Resize,
    Resume,
    SetPick,
    Wake,
)
from ._config import PoolConfig
from ._errors import PoolClosed
from ._events import (
    SCALE_EVENTS,
    AutoscaleEvent,
    ChannelConnectedEvent,
    ChannelDisconnectedEvent,
    ConnectionFailedEvent,
    Dispatcher,
    HealthCheckEvent,
    PoolClosedEvent,
    PoolStartedEvent,
    ReconnectScheduledEvent,
    StatusEvent,
    StreamLimitEvent,
)
from ._policy import autoscale, victims
from ._reaper import Reaper
from ._redact import redact_text, secrets_of
from ._resolve import Resolved
from ._slots import SlotTable
from ._spread import Spreader
from ._state import PoolState, SlotStatus, SlotView, Totals, bind_picker
from ._stats import pool_state
from ._strategy import Strategy, reader_pick
from ._worker import Worker

if TYPE_CHECKING:
    from ._pool import Pool

__all__ = ["Writer"]

logger = logging.getLogger(__name__)

# Bound on joining worker threads when the pool closes; they only wait on queues.
_JOIN_TIMEOUT = 5.0
# A paused pool resumes by itself after this long (a fork handler that never returned).
_PAUSE_LIMIT = 30.0
# Longest single wait of the writer: timers further off are looked at again then
# (a wait beyond threading.TIMEOUT_MAX would raise OverflowError).
_MAX_WAIT = 3600.0


@dataclass(slots=True)
class _Retiring:
    channel: PooledChannel
    deadline: float
    early: bool  # close as soon as no RPC is in flight (pool closing)


class Writer:
    """Consumes commands from ``queue`` and publishes one frozen ``PoolState`` by one
    reference swap (``pool._state``): the channels in rotation with the picker bound
    to them, the expected size, the slot views, the retired channels and the
    totals. It never waits on grpcio: channels are closed by the reaper thread.
    Holds the pool weakly so an abandoned pool can be collected (its finalizer
    then closes this writer).
    """

    def __init__(
        self,
        pool: Pool,
        config: PoolConfig,
        credentials: grpc.ChannelCredentials | None,
        name: str,
        ready: threading.Condition,
        events: Dispatcher,
        strategy: Strategy,
    ) -> None:
        self.queue: queue.Queue[object] = queue.Queue()
        self._pool_ref = weakref.ref(pool)
        self._config = config
        self._credentials = credentials
        self._name = name
        self._ready = ready
        self._events = events
        self._next_status = time.monotonic() + config.status_interval
        self._next_autoscale = time.monotonic() + config.autoscale_interval
        self._table: SlotTable[int, PooledChannel] = SlotTable()
        self._workers: dict[int, Worker] = {}
        self._views: dict[int, SlotView] = {}
        self._stopping: list[Worker] = []
        self._retiring: list[_Retiring] = []
        self._totals = Totals()
        self._strategy = strategy
        self._pick = reader_pick(strategy, 0, None, name)  # SetPick: sampled with listeners
        self._state = PoolState()  # the last one published
        self._bound = self._pick  # the pick its picker was bound with
        self._reaper = Reaper(name)
        self._paused_until: float | None = None  # set between a fork's Pause and Resume
        self._deferred: list[Worker] = []  # started on Resume (no new thread in gRPC at fork)
        self._closing: Close | None = None
        self._refresh_holder: Worker | None = None
        self._refresh_queue: list[Worker] = []
        # Error texts (grpcio's included) name the target: its user-info is hidden.
        self._secrets = secrets_of(config.targets)
        self._told_no_health = False  # UNIMPLEMENTED is logged once per pool
        self._spread = Spreader(self, config, name)
        self.thread = threading.Thread(
            target=self._run, name=f"grpc_pool-writer-{name}", daemon=True
        )

    def start(self, size: int) -> None:
        """Start the workers, then this thread; if any start fails, stop and join
        every thread started here, close what they opened, and re-raise."""
        if self._events.deliveries:
            self._emit(PoolStartedEvent, size=size, target=self._config.target_label)
        try:
            self._reaper.start()
            self._spread.start()
            self._resize(size)
            self._publish()
            self.thread.start()
        except BaseException as exc:
            for slot in list(self._workers):
                self._stop_worker(slot)
            self._spread.stop()
            self._reaper.stop()
            stopped = len(self._stopping)
            self._finish_close(None)  # joins them (bounded), closes channels they posted
            logger.error(
                "pool %s: start failed (%s: %s); stopped and joined the %d workers started",
                self._name,
                type(exc).__name__,
                exc,
                stopped,
            )
            raise

    def _emit(self, kind: Any, **fields: Any) -> None:
        """Build and dispatch an event, only when someone listens."""
        if self._events.deliveries:
            self._events.emit(kind(pool=self._name, at=time.monotonic(), **fields))

    # -- loop ------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            command: object = None
            try:  # the wait too: nothing may end this loop but a close
                command = self._next_command()
                if command is not None:
                    self._handle(command)
                self._reap()
                self._report_status()
                self._autoscale()
                if self._paused_until is not None and time.monotonic() >= self._paused_until:
                    self._resume()  # the fork's Resume never came
            except Exception:  # the writer must survive anything
                logger.exception("pool %s: writer failed on %r; going on", self._name, command)
            if self._closing is not None and not self._retiring:
                break
        self._finish_close(self._closing)

    def _next_command(self) -> object:
        """The next command; None when a timer is due first."""
        timeout = self._next_timeout()
        try:
            return self.queue.get(timeout=None if timeout is None else min(timeout, _MAX_WAIT))
        except queue.Empty:
            return None

    def _next_timeout(self) -> float | None:
        deadlines = [r.deadline for r in self._retiring]
        if self._config.status_interval and self._closing is None:
            deadlines.append(self._next_status)
        if self._config.autoscale and self._closing is None:
            deadlines.append(self._next_autoscale)
        if self._paused_until is not None:
            deadlines.append(self._paused_until)
        if not deadlines:
            return None
        return max(0.0, min(deadlines) - time.monotonic())

    def _report_status(self) -> None:
        """The periodic status event, with the sizes as they are now (not as configured)."""
        interval = self._config.status_interval
        now = time.monotonic()
        if not interval or now < self._next_status or self._closing is not None:
            return
        self._next_status = now + interval
        expected, current = len(self._workers), len(self._table)
        self._emit(
            StatusEvent,
            expected_size=expected,
            current_size=current,
            state=pool_state(expected, current),
        )

    def _autoscale(self) -> None:
        """Size the pool from the peak RPCs in flight since the last check
        (the rule: ``_policy.autoscale``)."""
        config = self._config
        now = time.monotonic()
        if not config.autoscale or now < self._next_autoscale or self._closing is not None:
            return
        self._next_autoscale = now + config.autoscale_interval
        channels = (*self._table.snapshot(), *(r.channel for r in self._retiring))
        # Per-channel peaks summed, as gax-java does: an upper bound of the pool's peak.
        peak = sum(c._counter.take_peak() for c in channels if c._counter is not None)
        high = config.max_size or config.size
        size = len(self._workers)
        decision = autoscale(
            size,
            peak,
            config.min_size,
            high,
            config.min_rpcs_per_channel,
            config.max_rpcs_per_channel,
            config.max_resize_delta,
        )
        target, min_channels, max_channels = (
            decision.target,
            decision.min_channels,
            decision.max_channels,
        )
        if target != size:
            self._resize(target)
            logger.info(
                "pool %s: autoscale %d -> %d (peak %d in flight)", self._name, size, target, peak
            )
        self._emit(
            AutoscaleEvent,
            peak=peak,
            min_channels=min_channels,
            max_channels=max_channels,
            previous_size=size,
            new_size=target,
        )
        ready = max(1, len(self._table))
        if target >= high and peak / ready >= 0.8 * config.stream_limit:
            logger.warning(
                "pool %s: at max_size %d with %.0f RPCs per channel, near the server's "
                "stream limit (%d): RPCs will queue",
                self._name,
                high,
                peak / ready,
                config.stream_limit,
            )
            self._emit(
                StreamLimitEvent,
                per_channel=peak / ready,
                stream_limit=config.stream_limit,
                size=target,
            )

    def _handle(self, command: object) -> None:
        if isinstance(
            command, (Register, Lost, Progress, HealthResult, RefreshRequest, RefreshDone)
        ):
            if self._workers.get(command.slot) is not command.worker:
                if isinstance(command, Register):  # stopped or replaced meanwhile
                    self._retire(command.channel, published=False)
                return
            if isinstance(command, Register):
                self._register(command.slot, command.channel, command.duration, command.serving)
            elif isinstance(command, Lost):
                self._lost(command)
            elif isinstance(command, HealthResult):
                self._health(command)
            elif isinstance(command, RefreshRequest):
                self._refresh_queue.append(command.worker)  # type: ignore[arg-type]
                self._grant_refresh()
            elif isinstance(command, RefreshDone):
                if self._refresh_holder is command.worker:
                    self._refresh_holder = None
                    self._grant_refresh()
            else:
                self._progress(command)
        elif isinstance(command, Resize):
            self._reply(command.reply, lambda: self._scale(command))
        elif isinstance(command, Call):
            self._reply(command.reply, command.fn)
        elif isinstance(command, Close):
            self._close(command)
        elif isinstance(command, Pause):
            self._pause(command)
        elif isinstance(command, Resume):
            self._resume()
        elif isinstance(command, SetPick):
            self._reply(command.reply, self._set_pick)
        elif isinstance(command, Resolved):
            if self._closing is None:
                self._spread.resolved(command)
        elif not isinstance(command, Wake):
            logger.error("pool %s: writer got unknown command %r", self._name, command)

    @staticmethod
    def _reply(reply: Reply, fn: Any) -> None:
        try:
            reply.set(fn())
        except Exception as exc:
            reply.set(error=exc)

    # -- layout ----------------------------------------------------------------
    def _register(self, slot: int, channel: PooledChannel, duration: float, serving: bool) -> None:
        if self._closing is not None:
            self._retire(channel, published=False)
            return
        view = self._views[slot]
        old = view.channel  # in rotation, or kept out of it while not serving
        if serving:
            self._table.register(slot, channel)
        else:
            self._table.unregister(slot)
        if old is not None and old is not channel:
            self._retire(old)
        self._totals = replace(self._totals, connects=self._totals.connects + 1)
        self._emit(
            ChannelConnectedEvent,
            slot=slot,
            channel_id=channel.channel_id,
            duration=duration,
            reconnect=view.connects > 0,
        )
        self._views[slot] = replace(
            view,
            state=SlotStatus.READY if serving else SlotStatus.UNHEALTHY,
            channel=channel,
            connected_since=time.monotonic(),
            connects=view.connects + 1,
            failures=0,
            last_error=view.last_error if serving else f"health check: {view.health}",
        )
        logger.info(
            "pool %s slot %d: %s (%s)",
            self._name,
            slot,
            "ready" if serving else "connected, not serving: out of rotation",
            channel.channel_id,
        )
        self._publish()

    def _lost(self, command: Lost) -> None:
        slot, channel = command.slot, command.channel
        reason = redact_text(command.reason, self._secrets)
        if self._views[slot].channel is not channel:
            return
        self._table.unregister(slot)
        self._retire(channel)
        self._spread.poke()  # the backends may have changed
        view = self._disconnected(slot, channel, reason)
        self._views[slot] = replace(
            view,
            state=SlotStatus.CONNECTING,
            channel=None,
            connected_since=None,
            last_error=reason,
            retry_delay=command.retry_in,
        )
        self._publish()
        self._emit(
            ReconnectScheduledEvent, slot=slot, delay=command.retry_in, attempt=1, reason=reason
        )

    def _disconnected(self, slot: int, channel: PooledChannel, reason: str) -> SlotView:
        """Count and report a lost connection once: when a ready slot stops being ready."""
        view = self._views[slot]
        if view.state not in (SlotStatus.READY, SlotStatus.UNHEALTHY):  # counted already
            return view
        since = view.connected_since
        self._totals = replace(self._totals, disconnects=self._totals.disconnects + 1)
        self._emit(
            ChannelDisconnectedEvent,
            slot=slot,
            channel_id=channel.channel_id,
            reason=reason,
            connected_for=time.monotonic() - since if since is not None else 0.0,
        )
        view = replace(view, disconnects=view.disconnects + 1, last_error=reason)
        self._views[slot] = view
        return view

    def _grant_refresh(self) -> None:
        """Max-age refreshes run one slot at a time: the next waiting worker goes."""
        while self._refresh_holder is None and self._refresh_queue:
            worker = self._refresh_queue.pop(0)
            if self._workers.get(worker.slot) is worker and self._closing is None:
                self._refresh_holder = worker
                worker.grant_refresh()
        if self._refresh_holder is None and self._closing is None:
            self._refresh_holder = self._spread.next_move(self._workers)  # one move at a time

    def _health(self, command: HealthResult) -> None:
        """A check answered: the connection stays; the slot leaves the rotation while
        not healthy and returns once healthy (no reconnect, no backoff)."""
        slot, channel, status = command.slot, command.channel, command.status
        view = replace(self._views[slot], health=status)
        if view.channel is channel:
            if command.healthy and view.state is SlotStatus.UNHEALTHY:
                self._table.register(slot, channel)
                view = replace(view, state=SlotStatus.READY)
                logger.info("pool %s slot %d: serving again (%s)", self._name, slot, status)
            elif not command.healthy and command.answered and view.state is SlotStatus.READY:
                self._table.unregister(slot)
                error = f"health check: {status}"
                view = replace(view, state=SlotStatus.UNHEALTHY, last_error=error)
                logger.info("pool %s slot %d: %s, out of rotation", self._name, slot, error)
        self._views[slot] = view
        if status == "UNIMPLEMENTED" and not self._told_no_health:
            self._told_no_health = True
            level = logging.DEBUG if self._config.suppress_connection_errors else logging.WARNING
            logger.log(
                level,
                "pool %s: server has no grpc.health.v1.Health service; channels count as healthy",
                self._name,
            )
        self._publish()
        self._emit(
            HealthCheckEvent,
            slot=command.slot,
            channel_id=command.channel.channel_id,
            status=command.status,
            healthy=command.healthy,
            duration=command.duration,
        )

    def _pause(self, command: Pause) -> None:
        """Before fork: ask every thread of the pool that calls into gRPC (workers,
        reaper, resolver) to park, and hand the forking thread the waits: this
        thread only decides, and holds new workers back until ``Resume``."""
        self._paused_until = time.monotonic() + _PAUSE_LIMIT
        workers = [*self._workers.values(), *self._stopping]
        for worker in workers:
            worker.pause()
        self._reaper.pause()
        command.waits.extend(worker.wait_paused for worker in workers)
        command.waits.append(self._reaper.wait_paused)
        command.waits.extend(entry.channel._wait_for_poller for entry in self._retiring)
        command.waits.append(self._spread.pause)  # no getaddrinfo running at fork
        command.dispatched.set()

    def _resume(self) -> None:
        if self._paused_until is None:
            return
        self._paused_until = None
        self._spread.resume()
        for worker in [*self._workers.values(), *self._stopping]:
            worker.resume()
        self._reaper.resume()
        deferred, self._deferred = self._deferred, []
        for worker in deferred:
            if self._workers.get(worker.slot) is worker:
                worker.start()

    def _set_pick(self) -> None:
        """Listeners changed: sample GetChannelEvents in readers' picks, or stop."""
        events = self._events
        emit = events.emit if events.deliveries else None
        self._pick = reader_pick(
            self._strategy, self._config.telemetry_sample_rate, emit, self._name
        )
        self._publish()

    def _progress(self, command: Progress) -> None:
        view = self._views[command.slot]
        if command.state is SlotStatus.BACKOFF:
            error = redact_text(command.error or "unknown", self._secrets)
            delay = command.delay or 0.0
            view = replace(
                view,
                state=SlotStatus.BACKOFF,
                failures=view.failures + 1,
                connect_failures=view.connect_failures + 1,
                last_error=error,
                retry_delay=delay,
            )
            self._totals = replace(self._totals, connect_failures=self._totals.connect_failures + 1)
            self._spread.poke()
            self._emit(
                ConnectionFailedEvent, slot=command.slot, error=error, failures=view.failures
            )
            self._emit(
                ReconnectScheduledEvent,
                slot=command.slot,
                delay=delay,
                attempt=view.failures + 1,
                reason=error,
            )
        elif command.state is SlotStatus.RECONNECTING and view.channel is not None:
            # The connection under a published channel closed; it stays in rotation
            # while it reconnects (RPCs on it wait or fail fast as gRPC decides).
            reason = redact_text(command.error or "closed", self._secrets)
            view = self._disconnected(command.slot, view.channel, reason)
            view = replace(view, state=SlotStatus.RECONNECTING)
            # gRPC reconnects by itself, at once: one attempt, as after any disconnect.
            self._emit(
                ReconnectScheduledEvent, slot=command.slot, delay=0.0, attempt=1, reason=reason
            )
        else:
            view = replace(view, state=command.state)
        self._views[command.slot] = view
        self._publish()

    def _scale(self, command: Resize) -> int:
        started = time.monotonic()
        before = len(self._workers)
        size = self._resize(command.target(before))
        self._emit(
            SCALE_EVENTS[command.operation],
            requested=command.requested,
            done=size - before,
            new_size=size,
            duration=time.monotonic() - started,
        )
        return size

    def _resize(self, size: int) -> int:
        current = len(self._workers)
        if size > current:
            free = (s for s in range(size) if s not in self._workers)
            added: list[int] = []
            try:
                for slot in [next(free) for _ in range(size - current)]:
                    worker = Worker(
                        slot,
                        self._config,
                        self._credentials,
                        self._name,
                        self.queue.put,
                        self._spread.dial,
                        self._reaper.close,
                    )
                    self._workers[slot] = worker
                    self._views[slot] = SlotView(slot)
                    added.append(slot)
                    if self._paused_until is None:
                        worker.start()
                    else:  # a fork is under way: no new thread into gRPC now
                        self._deferred.append(worker)
            except BaseException:
                # All or nothing: the slots added here go (their threads end on
                # their own and are joined at close); the layout is as before.
                for slot in added:
                    self._stop_worker(slot)
                self._publish()
                logger.error(
                    "pool %s: starting the worker of slot %d failed; removed the %d slots "
                    "this resize added",
                    self._name,
                    added[-1] if added else current,
                    len(added),
                )
                raise
        elif size < current:
            for slot in self._victims(current - size):
                self._stop_worker(slot)
        self._spread.layout()
        self._publish()
        return len(self._workers)

    def _victims(self, count: int) -> list[int]:
        """Slots to stop (the rule: ``_policy.victims``)."""
        loads: dict[int, int | None] = {}
        for slot in self._workers:
            channel = self._table.get(slot)
            loads[slot] = None if channel is None else channel.load
        return victims(loads, count)

    def _stop_worker(self, slot: int) -> None:
        worker = self._workers.pop(slot)
        worker.stop()
        if self._refresh_holder is worker:
            self._refresh_holder = None
            self._grant_refresh()
        self._stopping.append(worker)
        self._table.unregister(slot)
        channel = self._views.pop(slot).channel  # in rotation or kept out of it
        if channel is not None:
            self._retire(channel)
        self._stopping = [w for w in self._stopping if w.thread.is_alive()]
        if worker in self._deferred:  # never started (a fork was under way)
            self._deferred.remove(worker)

    # -- retire, then close ------------------------------------------------------
    def _retire(self, channel: PooledChannel, published: bool = True) -> None:
        """Out of rotation now; closed after the grace, or once drained when closing.

        A channel never published cannot be held by a caller: it is closed at once.
        """
        if not published:
            channel._refuse(self._closing is not None)
            self._reaper.close(channel)
            return
        if self._closing is None:
            entry = _Retiring(channel, time.monotonic() + self._config.retire_grace, False)
        else:
            entry = _Retiring(channel, time.monotonic() + self._closing.grace, True)
            self._drain_early(entry)
        self._retiring.append(entry)

    def _drain_early(self, entry: _Retiring) -> None:
        entry.early = True
        counter = entry.channel._counter
        if counter is not None:
            counter.on_idle = lambda: self.queue.put(Wake())

    def _reap(self) -> None:
        """Due retired channels: refuse new RPCs now (no grpcio call), count their
        RPCs into the totals in the same publish, and hand them to the reaper."""
        if not self._retiring:
            return
        now = time.monotonic()
        keep: list[_Retiring] = []
        for entry in self._retiring:
            channel = entry.channel
            if now < entry.deadline and not (entry.early and channel.in_flight == 0):
                keep.append(entry)
                continue
            channel._refuse(self._closing is not None)  # its count is final from here
            busy = channel.in_flight
            if busy:
                logger.info(
                    "pool %s: closing %s with %d RPCs still in flight after the grace",
                    self._name,
                    channel.channel_id,
                    busy,
                )
            closed = self._totals.rpcs_closed + (channel.rpcs_total or 0)
            self._totals = replace(self._totals, rpcs_closed=closed)
            self._reaper.close(channel)
        if len(keep) != len(self._retiring):
            self._retiring = keep
            self._publish()

    # -- close -----------------------------------------------------------------
    def _close(self, command: Close) -> None:
        if self._closing is not None:
            return
        self._closing = command
        self._emit(PoolClosedEvent, grace=command.grace)
        self._spread.stop()
        for slot in list(self._workers):
            self._stop_worker(slot)
        deadline = time.monotonic() + command.grace
        for entry in self._retiring:  # already retired: close when drained, by the new deadline
            entry.deadline = min(entry.deadline, deadline)
            self._drain_early(entry)
        self._publish()

    def _finish_close(self, command: Close | None) -> None:
        deadline = time.monotonic() + _JOIN_TIMEOUT
        self._spread.join(deadline)
        for worker in self._stopping:
            worker.thread.join(max(0.0, deadline - time.monotonic()))
            if worker.thread.is_alive():
                logger.warning(
                    "pool %s: worker thread %s did not stop", self._name, worker.thread.name
                )
        # Late posts from workers (a Register racing the stop) hold channels: close them.
        while True:
            try:
                late = self.queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(late, Register):
                late.channel._refuse(pool_closed=True)
                self._reaper.close(late.channel)
            elif isinstance(late, (Resize, Call)):
                late.reply.set(error=PoolClosed("pool is closed", self._pool_ref()))
            elif isinstance(late, Pause):  # a fork right after close: nothing runs any more
                late.dispatched.set()
            elif isinstance(late, SetPick):
                late.reply.set(None)
        self._reaper.stop()
        self._reaper.join(deadline + _JOIN_TIMEOUT)  # a poller tick per channel, in parallel
        deferred, self._deferred = self._deferred, []
        for worker in deferred:
            worker.stop()
        if command is not None:
            command.reply.set(None)

    # -- publish -----------------------------------------------------------------
    def _publish(self) -> None:
        """One new PoolState, one reference swap; then wake whoever waits for it."""
        last = self._state
        channels = () if self._closing is not None else self._table.snapshot()
        pick: Callable[[], PooledChannel] | None
        if channels == last.channels and last.pick is not None and self._bound is self._pick:
            channels, pick = last.channels, last.pick  # keep the round robin going
        else:
            pick, self._bound = bind_picker(channels, self._pick), self._pick
        self._state = PoolState(
            channels=channels,
            pick=pick,
            expected=len(self._workers),
            views=tuple(self._views[s] for s in sorted(self._views)),
            retired=tuple(r.channel for r in self._retiring),
            totals=self._totals,
            addresses=self._spread.addresses,
            closing=self._closing is not None,
        )
        pool = self._pool_ref()
        if pool is not None:
            pool._state = self._state
        with self._ready:
            self._ready.notify_all()
