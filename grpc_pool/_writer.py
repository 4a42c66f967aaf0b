"""Who writes the snapshot: the writer thread, sole owner of the channel layout."""

from __future__ import annotations

import logging
import queue
import threading
import time
import weakref
from collections.abc import Callable
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
    Dispatcher,
    PoolClosedEvent,
    PoolStartedEvent,
)
from ._policy import victims
from ._reaper import Reaper
from ._redact import secrets_of
from ._reports import SlotReports
from ._resolve import Resolved
from ._retire import Retirement, Retiring
from ._slots import SlotTable
from ._spread import Spreader
from ._state import PoolState, SlotView, Totals, bind_picker
from ._strategy import Strategy, reader_pick
from ._timers import Timers
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


class Writer(SlotReports, Retirement, Timers):
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
        self._retiring: list[Retiring] = []
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
    def _grant_refresh(self) -> None:
        """Max-age refreshes run one slot at a time: the next waiting worker goes."""
        while self._refresh_holder is None and self._refresh_queue:
            worker = self._refresh_queue.pop(0)
            if self._workers.get(worker.slot) is worker and self._closing is None:
                self._refresh_holder = worker
                worker.grant_refresh()
        if self._refresh_holder is None and self._closing is None:
            self._refresh_holder = self._spread.next_move(self._workers)  # one move at a time

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
                        self._reaper.close,
                        self._spread.dial,
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
