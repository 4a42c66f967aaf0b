"""The writer's workers: who runs which slot, who is stopping, who waits for a fork
to end before starting, and whose max-age refresh (or move) goes next. Writer
thread only; the workers themselves run on their own threads."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from .._base.parking import HOLD_LIMIT, Parkable
from .._workers.watch import Watch, make_watch
from .._workers.worker import Worker

__all__ = ["Crew"]

Move = tuple[int, str | None]  # a slot and its new address

logger = logging.getLogger(__name__)


class Crew:
    """Workers by slot, and the pool's one connectivity watcher they share (started
    with the first worker, ended after the last). ``make(slot, watch)`` builds a
    slot's worker (not started)."""

    def __init__(self, make: Callable[[int, Watch], Worker], name: str) -> None:
        self._make = make
        self._name = name
        self.watch = make_watch(name)
        self.by_slot: dict[int, Worker] = {}
        self.stopping: list[Worker] = []
        self.parked_until: float | None = None  # between a fork's Pause and Resume
        self._deferred: list[Worker] = []  # started on unpark: no new thread in gRPC at fork
        self.holder: Worker | None = None  # the one slot refreshing or moving now
        self._waiting: list[Worker] = []  # refreshes asked for, in order

    def __len__(self) -> int:
        return len(self.by_slot)

    def current(self, slot: int, worker: object) -> bool:
        """Whether ``worker`` still runs ``slot`` (a stopped one's reports are void)."""
        return self.by_slot.get(slot) is worker

    def add(self, slot: int) -> None:
        worker = self._make(slot, self.watch)
        self.by_slot[slot] = worker
        if self.parked_until is None:
            self.watch.start()
            worker.start()
        else:  # a fork is under way: no new thread into gRPC now
            self._deferred.append(worker)

    def stop(self, slot: int) -> None:
        worker = self.by_slot.pop(slot)
        worker.stop()
        if self.holder is worker:
            self.holder = None
        self.stopping = [w for w in self.stopping if w.thread.is_alive()]
        if worker in self._deferred:  # never started
            self._deferred.remove(worker)
        else:
            self.stopping.append(worker)

    # -- refresh arbitration: one slot at a time ----------------------------------------
    def want_refresh(self, slot: int) -> None:
        self._waiting.append(self.by_slot[slot])

    def refresh_done(self, worker: object) -> None:
        if self.holder is worker:
            self.holder = None

    def grant(
        self, next_move: Callable[[], tuple[int, str | None] | None]
    ) -> tuple[int, str | None] | None:
        """Hand out the next refresh, else the next move (returned: the writer sends it)."""
        while self.holder is None and self._waiting:
            worker = self._waiting.pop(0)
            if self.by_slot.get(worker.slot) is worker:
                self.holder = worker
                worker.grant_refresh()
        if self.holder is None:
            move = next_move()
            if move is not None:
                self.holder = self.by_slot[move[0]]
                return move
        return None

    # -- fork --------------------------------------------------------------------------
    def park(self, others: list[Parkable]) -> list[Parkable]:
        """Ask every worker (and ``others``) to park; the list to wait for."""
        self.parked_until = time.monotonic() + HOLD_LIMIT
        threads: list[Parkable] = [*self.by_slot.values(), *self.stopping, self.watch, *others]
        for thread in threads:
            thread.park()
        return threads

    def unpark(self, others: list[Parkable]) -> None:
        if self.parked_until is None:
            return
        self.parked_until = None
        threads: list[Parkable] = [*self.by_slot.values(), *self.stopping, self.watch, *others]
        for thread in threads:
            thread.unpark()
        deferred, self._deferred = self._deferred, []
        for worker in deferred:
            if self.by_slot.get(worker.slot) is worker:
                self.watch.start()
                worker.start()

    # -- close -------------------------------------------------------------------------
    def join(self, deadline: float) -> None:
        """Join the stopped workers' threads (bounded); forget the deferred ones."""
        for worker in self.stopping:
            if worker.thread.ident is None:
                continue
            worker.thread.join(max(0.0, deadline - time.monotonic()))
            if worker.thread.is_alive():
                logger.warning(
                    "pool %s: worker thread %s did not stop", self._name, worker.thread.name
                )
        deferred, self._deferred = self._deferred, []
        for worker in deferred:
            worker.stop()
        self.watch.stop()  # the workers have let their channels go
        self.watch.join(deadline)
