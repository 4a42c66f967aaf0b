"""Who writes the published state: the writer thread, sole owner of the channel layout.

It takes commands from its queue a batch at a time, lets the handlers decide
(``Layout``, ``Spreader``, ``Timers``, ``Ejector``, ``Retirement``: each returns
``Effects``), then acts once: channels to the retirement or the reaper, moves to
workers, one new ``PoolState`` published, events emitted. It never waits on grpcio."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import grpc

from .._base.parking import Parkable
from .._base.redact import secrets_of
from .._channel.pooled import PooledChannel, Reroute
from .._config.config import PoolConfig
from .._contract import commands as cmd
from .._contract.events import SCALE_EVENTS, Dispatcher, PoolClosedEvent, PoolStartedEvent
from .._contract.state import Pick, PoolState, bind_picker
from .._workers.worker import Worker
from .crew import Crew
from .layout import NOTHING, Effects, Layout
from .outliers import Ejector
from .reaper import Reaper
from .retire import Retirement, answer_late
from .spread import Spreader
from .timers import Timers

__all__ = ["Writer"]

logger = logging.getLogger(__name__)

State = PoolState[PooledChannel]
# Bound on joining worker threads when the pool closes; they only wait on queues.
_JOIN_TIMEOUT = 5.0
# Longest single wait (a wait beyond threading.TIMEOUT_MAX raises OverflowError).
_MAX_WAIT = 3600.0
_BATCH = 256  # most commands handled before one publish
_WORKER_REPORTS: tuple[type, ...] = (cmd.Register, cmd.Lost, cmd.Progress, cmd.HealthResult)
_WORKER_REPORTS += (cmd.RefreshRequest, cmd.RefreshDone)


class Writer:
    """Consumes commands from ``queue`` and publishes one frozen ``PoolState`` per
    batch through ``publish`` (the readers' swap): the channels in rotation with the
    picker bound to them, the sizes, slot views, retired channels, totals and ejections.

    make_pick: ``make_pick(emit or None)`` -> the strategy's pick over a tuple of
        channels (None: round robin in C), sampling GetChannelEvents when given emit.
    """

    def __init__(
        self,
        config: PoolConfig,
        credentials: grpc.ChannelCredentials | None,
        name: str,
        events: Dispatcher,
        make_pick: Callable[[Callable[[Any], None] | None], Pick[PooledChannel] | None],
        publish: Callable[[State], None],
        reroute: Reroute | None = None,
    ) -> None:
        self.queue: queue.Queue[object] = queue.Queue()
        self._config = config
        self._name = name
        self._events = events
        self._make_pick = make_pick
        self._publish_to = publish
        self._pick = make_pick(None)  # SetPick: sampled while someone listens
        self._state: State = PoolState()  # the last one published
        self._bound = self._pick  # the pick its picker was bound with
        self._layout = Layout(config, name, secrets_of(config.targets))
        self._retirement = Retirement(name, config.retire_grace, lambda: self.queue.put(cmd.Wake()))
        self._timers = Timers(config, name, events, lambda: self.queue.put(cmd.Wake()))
        self._ejector = Ejector(config, name, lambda: self.queue.put(cmd.Wake()))
        self._spread = Spreader(config, name, self.queue.put)
        self._reaper = Reaper(name)
        close, dial = self._reaper.close, self._spread.dial
        # The queue's put is looked up when a worker is made (the bench times it).
        make = partial(
            Worker, config=config, credentials=credentials, pool_name=name, reroute=reroute
        )
        self._crew = Crew(
            lambda slot, watch: make(slot, watch, post=self.queue.put, close=close, dial=dial), name
        )
        self._closing: cmd.Close | None = None
        self._answers: list[tuple[cmd.Reply, Any, BaseException | None]] = []  # after the publish
        self.thread = threading.Thread(
            target=self._run, name=f"grpc_pool-writer-{name}", daemon=True
        )

    def start(self, size: int) -> None:
        """Start the workers, then this thread; if any start fails, stop and join
        every thread started here, close what they opened, and re-raise."""
        started = {"size": size, "target": self._config.target_label}
        self._act(Effects(events=((PoolStartedEvent, started),)))
        try:
            self._reaper.start()
            effects = self._spread.start(())
            self._act(effects + self._resize(size) + Effects(changed=True))
            self.thread.start()
        except BaseException as exc:
            for slot in list(self._crew.by_slot):
                self._stop_worker(slot)
            self._spread.stop()
            self._reaper.stop()
            stopped = len(self._crew.stopping)
            self._finish_close(None)  # joins them (bounded), closes channels they posted
            why = f"{type(exc).__name__}: {exc}"
            logger.error("pool %s: start failed (%s); stopped %d workers", self._name, why, stopped)
            raise

    # -- loop ----------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            batch: list[object] = []
            try:  # the wait too: nothing may end this loop but a close
                batch = self._next_batch()
            except Exception:
                logger.exception("pool %s: writer failed waiting; going on", self._name)
            effects = NOTHING
            for command in batch:
                try:
                    effects += self._handle(command)
                except Exception:
                    logger.exception("pool %s: writer failed on %r; going on", self._name, command)
            try:
                self._act(effects + self._tick())
            except Exception:
                logger.exception("pool %s: writer failed acting on %r; going on", self._name, batch)
            answers, self._answers = self._answers, []
            for reply, value, error in answers:
                reply.set(value, error)
            if self._closing is not None and not self._retirement.entries:
                break
        self._finish_close(self._closing)

    def _next_timeout(self) -> float | None:
        """Seconds until the next timer is due (None: none is)."""
        deadlines = self._retirement.deadlines()
        if self._closing is None:
            deadlines += self._timers.deadlines() + self._ejector.deadlines()
        if self._crew.parked_until is not None:
            deadlines.append(self._crew.parked_until)
        return max(0.0, min(deadlines) - time.monotonic()) if deadlines else None

    def _next_batch(self) -> list[object]:
        """The commands queued now (waiting for the first until a timer is due)."""
        timeout = self._next_timeout()
        try:
            batch = [self.queue.get(timeout=None if timeout is None else min(timeout, _MAX_WAIT))]
        except queue.Empty:
            return []
        while len(batch) < _BATCH:
            try:
                batch.append(self.queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def _tick(self) -> Effects:
        """What the clock decides: the status event, autoscaling (due retirements are
        reaped by ``_act``, after this batch's own retirements)."""
        effects = NOTHING
        if (until := self._crew.parked_until) is not None and time.monotonic() >= until:
            self._unpark()  # the fork's Resume never came
        if self._closing is not None:
            return effects
        live = self._layout.channels()  # the status counts them as readers see them
        effects += self._timers.status(len(self._crew), len(self._ejector.kept(live)))
        effects += self._ejector.tick(live)
        channels = (*live, *self._retirement.channels())
        target, decided = self._timers.autoscale(len(self._crew), self._layout.ready(), channels)
        if target is not None and target != len(self._crew):
            effects += self._resize(target)
        return effects + decided

    def _handle(self, command: object) -> Effects:
        if isinstance(command, _WORKER_REPORTS):
            return self._report(command)
        if isinstance(command, cmd.Resize):
            return self._reply(command.reply, lambda: self._scale(command))
        if isinstance(command, cmd.Call):
            return self._reply(command.reply, lambda: (command.fn(), NOTHING))
        if isinstance(command, cmd.Close):
            return self._close(command)
        if isinstance(command, cmd.Pause):
            self._park(command)
        elif isinstance(command, cmd.Resume):
            self._unpark()
        elif isinstance(command, cmd.SetPick):
            return self._reply(command.reply, lambda: (None, self._set_pick()))
        elif isinstance(command, cmd.Resolved):
            if self._closing is None:
                return self._spread.resolved(command, self._crew.by_slot)
        elif not isinstance(command, cmd.Wake):
            logger.error("pool %s: writer got unknown command %r", self._name, command)
        return NOTHING

    def _report(self, command: Any) -> Effects:
        """A worker's report; a stopped (or replaced) worker's is void."""
        if not self._crew.current(command.slot, command.worker):
            if isinstance(command, cmd.Register):
                return Effects(discard=(command.channel,))
            return NOTHING
        if isinstance(command, cmd.Register):
            return self._layout.register(command, self._closing is not None)
        if isinstance(command, cmd.Lost):
            return self._layout.lost(command)
        if isinstance(command, cmd.HealthResult):
            return self._layout.health(command)
        if isinstance(command, cmd.Progress):
            return self._layout.progress(command)
        if isinstance(command, cmd.RefreshRequest):
            self._crew.want_refresh(command.slot)
        else:
            self._crew.refresh_done(command.worker)
        return NOTHING

    def _reply(self, reply: cmd.Reply, fn: Callable[[], tuple[Any, Effects]]) -> Effects:
        """Run ``fn``; its answer goes out after the batch is published (a caller that
        resized reads the new layout as soon as it has the answer)."""
        try:
            value, effects = fn()
        except Exception as exc:
            self._answers.append((reply, None, exc))
            return NOTHING
        self._answers.append((reply, value, None))
        return effects

    # -- acting ----------------------------------------------------------------------
    def _act(self, effects: Effects) -> None:
        """Do what the handlers decided: once per batch."""
        grace = self._closing.grace if self._closing is not None else None
        for channel in effects.retire:
            self._retirement.retire(channel, grace)
        for channel in effects.discard:  # never published: no caller can hold it
            channel._shut(self._closing is not None)
            self._reaper.close(channel)
        for slot, address in effects.moves:
            self._send(slot, address)
        due = self._retirement.due(self._closing is not None)
        for channel in due:  # counted in the same publish that drops them
            self._layout.count_closed(channel.rpcs_total or 0)
            self._reaper.close(channel)
        changed = effects.changed or bool(effects.retire or effects.moves or due)
        changed = self._grant_refresh() or changed
        if changed:
            self._publish()
        if effects.events and self._events.deliveries:
            at = time.monotonic()
            for kind, fields in effects.events:
                self._events.emit(kind(pool=self._name, at=at, **fields))
        if effects.poke:
            self._spread.poke()

    def _send(self, slot: int, address: str | None) -> None:
        worker = self._crew.by_slot.get(slot)
        if worker is not None:
            self._layout.place(slot, address)
            worker.move(address)

    def _grant_refresh(self) -> bool:
        """Max-age refreshes and moves run one slot at a time: the next goes now.
        True when a move was handed out (the slot's address changed)."""
        if self._closing is not None:
            return False
        move = self._crew.grant(lambda: self._spread.next_move(self._crew.by_slot))
        if move is not None:
            self._send(*move)
        return move is not None

    def _publish(self) -> None:
        """One new PoolState, one reference swap (the readers' ``publish`` also wakes
        whoever waits on the last one)."""
        last = self._state
        channels = self._ejector.kept(self._layout.channels()) if self._closing is None else ()
        pick: Callable[[], PooledChannel] | None
        if channels == last.channels and last.pick is not None and self._bound is self._pick:
            channels, pick = last.channels, last.pick  # keep the round robin going
        else:
            pick, self._bound = bind_picker(channels, self._pick), self._pick
        self._state = PoolState(
            channels=channels,
            pick=pick,
            expected=len(self._crew),
            views=self._layout.views(),
            retired=self._retirement.channels(),
            totals=self._layout.totals,
            addresses=self._spread.addresses,
            closing=self._closing is not None,
            ejections=self._ejector.published(),
        )
        self._publish_to(self._state)

    # -- commands --------------------------------------------------------------------
    def _set_pick(self) -> Effects:
        """Listeners changed: sample GetChannelEvents in readers' picks, or stop."""
        self._pick = self._make_pick(self._events.emit if self._events.deliveries else None)
        return Effects(changed=True)

    def set_pick_now(self) -> None:
        """``SetPick`` on the calling thread: before this thread runs, or on it."""
        self._act(self._set_pick())

    def _scale(self, command: cmd.Resize) -> tuple[int, Effects]:
        started = time.monotonic()
        before = len(self._crew)
        effects = self._resize(command.target(before))
        size = len(self._crew)
        fields = {
            "requested": command.requested,
            "done": size - before,
            "new_size": size,
            "duration": time.monotonic() - started,
        }
        return size, effects + Effects(events=((SCALE_EVENTS[command.operation], fields),))

    def _resize(self, size: int) -> Effects:
        current = len(self._crew)
        effects = Effects(changed=True)
        if size > current:
            free = (s for s in range(size) if s not in self._crew.by_slot)
            added: list[int] = []
            try:
                for slot in [next(free) for _ in range(size - current)]:
                    self._layout.add_slot(slot)
                    added.append(slot)
                    self._crew.add(slot)
            except BaseException:
                # All or nothing: the slots added here go (their threads end on
                # their own and are joined at close); the layout is as before.
                for slot in added:
                    if slot in self._crew.by_slot:
                        effects += self._stop_worker(slot)
                    else:
                        effects += self._layout.remove_slot(slot)
                self._act(effects)
                logger.error(
                    "pool %s: starting the worker of slot %d failed; removed the %d slots "
                    "this resize added",
                    self._name,
                    added[-1] if added else current,
                    len(added),
                )
                raise
        elif size < current:
            for slot in self._layout.victims(list(self._crew.by_slot), current - size):
                effects += self._stop_worker(slot)
        return effects + self._spread.layout(self._crew.by_slot)

    def _stop_worker(self, slot: int) -> Effects:
        self._crew.stop(slot)
        return self._layout.remove_slot(slot)

    # -- fork (the writer only asks; the forking thread waits) ---------------------------
    def _park(self, command: cmd.Pause) -> None:
        """Ask every thread of the pool that calls into gRPC to park; new workers wait
        for ``Resume``. Retiring channels' pollers must have ended too."""
        command.parked.extend(self._crew.park(self._others()))
        command.parked.extend(self._retirement.pollers())
        command.dispatched.set()

    def _unpark(self) -> None:
        self._crew.unpark(self._others())

    def _others(self) -> list[Parkable]:
        """The pool's threads besides the workers that call into gRPC."""
        found: list[Parkable] = [self._reaper]
        if self._spread.thread is not None:
            found.append(self._spread.thread)
        return found

    # -- close -----------------------------------------------------------------------
    def _close(self, command: cmd.Close) -> Effects:
        if self._closing is not None:
            return NOTHING
        self._closing = command
        self._spread.stop()
        effects = Effects(changed=True, events=((PoolClosedEvent, {"grace": command.grace}),))
        for slot in list(self._crew.by_slot):
            effects += self._stop_worker(slot)
        self._retirement.closing(command.grace)
        return effects

    def _finish_close(self, command: cmd.Close | None) -> None:
        deadline = time.monotonic() + _JOIN_TIMEOUT
        self._spread.join(deadline)
        self._crew.join(deadline)
        answer_late(self.queue, self._reaper.close)
        self._reaper.stop()
        self._reaper.join(deadline + _JOIN_TIMEOUT)  # a poller tick per channel, in parallel
        if command is not None:
            command.reply.set(None)
