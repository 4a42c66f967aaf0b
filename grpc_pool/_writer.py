"""Who writes the snapshot: the writer thread, sole owner of the channel layout."""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
import weakref
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
    RefreshDone,
    RefreshRequest,
    Register,
    Reply,
    Resize,
    SlotState,
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
from ._redact import redact_text, secrets_of
from ._resolve import Resolved
from ._slots import SlotTable
from ._spread import Spreader
from ._stats import pool_state
from ._worker import Worker

if TYPE_CHECKING:
    from ._pool import Pool

__all__ = ["SlotView", "Writer"]

logger = logging.getLogger(__name__)

# Bound on joining worker threads when the pool closes; they only wait on queues.
_JOIN_TIMEOUT = 5.0
# A paused writer resumes by itself after this long (a fork handler that never returned).
_PAUSE_LIMIT = 30.0
# How long the writer waits for its workers to park.
_PAUSE_WAIT = 3.0
# A due channel whose gRPC poller still runs is looked at again this often, and
# closed regardless after _POLLER_GRACE (see PooledChannel._close).
_POLLER_RECHECK = 0.05
_POLLER_GRACE = 1.0
# Longest single wait of the writer: timers further off are looked at again then
# (a wait beyond threading.TIMEOUT_MAX would raise OverflowError).
_MAX_WAIT = 3600.0


@dataclass(frozen=True, slots=True)
class SlotView:
    """What the writer knows of a slot, published for ``Pool.stats()``."""

    slot: int
    state: str = "connecting"
    channel: PooledChannel | None = None
    connected_since: float | None = None
    connects: int = 0
    failures: int = 0
    last_error: str | None = None
    disconnects: int = 0
    connect_failures: int = 0
    retry_delay: float | None = None
    health: str | None = None
    address: str | None = None  # spreading: the backend it connects to (_spread.py)


@dataclass(slots=True)
class _Retiring:
    channel: PooledChannel
    deadline: float
    early: bool  # close as soon as no RPC is in flight (pool closing)
    close_by: float | None = None  # due, but gRPC's poller still ran: close by then anyway


class Writer:
    """Consumes commands from ``queue`` and publishes, by reference swap on the pool:

    ``_snapshot`` (tuple of ready channels, contiguous, with the ``_fast`` picker
    bound to it), ``_expected`` (slots configured) and ``_views`` (tuple of
    SlotView). Holds the pool weakly so an abandoned pool can be collected (its
    finalizer then closes this writer).
    """

    def __init__(
        self,
        pool: Pool,
        config: PoolConfig,
        credentials: grpc.ChannelCredentials | None,
        name: str,
        ready: threading.Condition,
        events: Dispatcher,
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
        # Pool-lifetime totals (monotonic, for counters): connects, disconnects,
        # failed attempts, RPCs of channels already closed.
        self._totals = [0, 0, 0, 0]
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
            self._spread.start()
            self._resize(size)
            self._publish()
            self.thread.start()
        except BaseException as exc:
            for slot in list(self._workers):
                self._stop_worker(slot)
            self._spread.stop()
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
        """Size the pool from the peak RPCs in flight since the last check (gax-java's
        ChannelPool rule): between ceil(peak / max_rpcs) and ceil(peak / min_rpcs)
        channels nothing changes (the hysteresis band), outside it the size moves
        toward the band by at most max_resize_delta."""
        config = self._config
        now = time.monotonic()
        if not config.autoscale or now < self._next_autoscale or self._closing is not None:
            return
        self._next_autoscale = now + config.autoscale_interval
        channels = (*self._table.snapshot(), *(r.channel for r in self._retiring))
        # Per-channel peaks summed, as gax-java does: an upper bound of the pool's peak.
        peak = sum(c._counter.take_peak() for c in channels if c._counter is not None)
        low, high = config.min_size, config.max_size or config.size
        min_channels = min(high, max(low, math.ceil(peak / config.max_rpcs_per_channel)))
        max_channels = min(high, max(low, math.ceil(peak / config.min_rpcs_per_channel)))
        size = len(self._workers)
        target = size
        if size < min_channels:
            target = min(size + config.max_resize_delta, min_channels)
        elif size > max_channels:
            target = max(size - config.max_resize_delta, max_channels)
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
            command, (Register, Lost, SlotState, HealthResult, RefreshRequest, RefreshDone)
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
                self._slot_state(command)
        elif isinstance(command, Resize):
            self._reply(command.reply, lambda: self._scale(command))
        elif isinstance(command, Call):
            self._reply(command.reply, command.fn)
        elif isinstance(command, Close):
            self._close(command)
        elif isinstance(command, Pause):
            self._pause(command)
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
        self._totals[0] += 1
        self._emit(
            ChannelConnectedEvent,
            slot=slot,
            channel_id=channel.channel_id,
            duration=duration,
            reconnect=view.connects > 0,
        )
        self._views[slot] = replace(
            view,
            state="ready" if serving else "unhealthy",
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
            state="connecting",
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
        if view.state not in ("ready", "unhealthy"):  # counted when it started reconnecting
            return view
        since = view.connected_since
        self._totals[1] += 1
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
        layout = False
        if view.channel is channel:
            if command.healthy and view.state == "unhealthy":
                self._table.register(slot, channel)
                view, layout = replace(view, state="ready"), True
                logger.info("pool %s slot %d: serving again (%s)", self._name, slot, status)
            elif not command.healthy and command.answered and view.state == "ready":
                self._table.unregister(slot)
                error = f"health check: {status}"
                view, layout = replace(view, state="unhealthy", last_error=error), True
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
        if layout:
            self._publish()
        else:
            self._publish_views()
        self._emit(
            HealthCheckEvent,
            slot=command.slot,
            channel_id=command.channel.channel_id,
            status=command.status,
            healthy=command.healthy,
            duration=command.duration,
        )

    def _pause(self, command: Pause) -> None:
        """Before fork: park every worker, let gRPC's pollers end, then park here."""
        deadline = time.monotonic() + _PAUSE_WAIT
        workers = [*self._workers.values(), *self._stopping]
        for worker in workers:
            worker.pause()
        quiet = all([worker.wait_paused(deadline) for worker in workers])
        for entry in self._retiring:
            quiet = entry.channel._wait_for_poller(deadline) and quiet
        quiet = self._spread.pause(deadline) and quiet  # no getaddrinfo running at fork
        if not quiet:
            logger.warning("pool %s: a worker did not park before fork", self._name)
        command.paused.set()
        command.resume.wait(_PAUSE_LIMIT)
        self._spread.resume()
        for worker in workers:
            worker.resume()

    def _slot_state(self, command: SlotState) -> None:
        view = self._views[command.slot]
        if command.state == "backoff":
            error = redact_text(command.error or "unknown", self._secrets)
            delay = command.delay or 0.0
            view = replace(
                view,
                state="backoff",
                failures=view.failures + 1,
                connect_failures=view.connect_failures + 1,
                last_error=error,
                retry_delay=delay,
            )
            self._totals[2] += 1
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
        elif command.state == "reconnecting" and view.channel is not None:
            # The connection under a published channel closed; it stays in rotation
            # while it reconnects (RPCs on it wait or fail fast as gRPC decides).
            reason = redact_text(command.error or "closed", self._secrets)
            view = self._disconnected(command.slot, view.channel, reason)
            view = replace(view, state="reconnecting")
            # gRPC reconnects by itself, at once: one attempt, as after any disconnect.
            self._emit(
                ReconnectScheduledEvent, slot=command.slot, delay=0.0, attempt=1, reason=reason
            )
        else:
            view = replace(view, state=command.state)
        self._views[command.slot] = view
        self._publish_views()

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
                    )
                    self._workers[slot] = worker
                    self._views[slot] = SlotView(slot)
                    added.append(slot)
                    worker.start()
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
        """Slots to stop: not ready first, then the least loaded, then the newest."""

        def cost(slot: int) -> tuple[int, int, int]:
            channel = self._table.get(slot)
            if channel is None:
                return (0, 0, -slot)
            return (1, channel.load, -slot)

        return sorted(self._workers, key=cost)[:count]

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

    # -- retire, then close ------------------------------------------------------
    def _retire(self, channel: PooledChannel, published: bool = True) -> None:
        """Out of rotation now; closed after the grace, or once drained when closing.

        A channel never published cannot be held by a caller: it is closed at once.
        """
        if not published:
            channel._shutdown(self._closing is not None)
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
        if not self._retiring:
            return
        now = time.monotonic()
        keep: list[_Retiring] = []
        for entry in self._retiring:
            channel = entry.channel
            if now >= entry.deadline or (entry.early and channel.in_flight == 0):
                if channel._poller_running() and (entry.close_by is None or now < entry.close_by):
                    # Never block the writer on grpcio's poller (it ends within a 0.2 s
                    # tick): look again shortly, close once it is gone.
                    entry.close_by = entry.close_by or now + _POLLER_GRACE
                    entry.deadline = now + _POLLER_RECHECK
                    keep.append(entry)
                    continue
                busy = channel.in_flight
                if busy:
                    logger.info(
                        "pool %s: closing %s with %d RPCs still in flight after the grace",
                        self._name,
                        channel.channel_id,
                        busy,
                    )
                self._totals[3] += channel.rpcs_total or 0
                try:
                    channel._shutdown(self._closing is not None)
                except Exception:
                    logger.exception("pool %s: closing %s failed", self._name, channel.channel_id)
            else:
                keep.append(entry)
        if len(keep) != len(self._retiring):
            self._retiring = keep
            self._publish_views()

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
                late.channel._shutdown(pool_closed=True)
            elif isinstance(late, (Resize, Call)):
                late.reply.set(error=PoolClosed("pool is closed", self._pool_ref()))
            elif isinstance(late, Pause):  # a fork right after close: nothing runs any more
                late.paused.set()
        if command is not None:
            command.reply.set(None)

    # -- publish -----------------------------------------------------------------
    def _publish(self) -> None:
        pool = self._pool_ref()
        if pool is not None:
            # Snapshot before expected size: a reader never sees more channels than slots.
            pool._publish_snapshot(() if self._closing is not None else self._table.snapshot())
            pool._expected = len(self._workers)
        self._publish_views()
        with self._ready:
            self._ready.notify_all()

    def _publish_views(self) -> None:
        pool = self._pool_ref()
        if pool is not None:
            pool._views = tuple(self._views[s] for s in sorted(self._views))
            pool._retired = tuple(r.channel for r in self._retiring)
            pool._totals = tuple(self._totals)
            pool._addresses = self._spread.addresses
