"""Who closes channels: the reaper thread, so that the writer never waits on grpcio.

The writer decides (a channel is due: its gate already refuses new RPCs) and
hands the channel here; the reaper closes the grpc channel. The pool's own
watcher runs no grpcio poller, so that is at once; where a grpcio connectivity
poller of the channel runs (the ``subscribe()`` fallback on grpcio before 1.80,
or a caller who subscribed to a pooled channel) it waits for it to end first
(closing under a running poller makes it raise ValueError on gRPC's thread),
for many channels at once: a hundred retired channels cost one poller tick.
"""

from __future__ import annotations

import logging
import queue
import threading
import time

from .._base.parking import Parking
from .._channel.pooled import PooledChannel

__all__ = ["Reaper"]

logger = logging.getLogger(__name__)

# How often pending channels are looked at while their pollers run.
_RECHECK = 0.01
# A poller that has not ended after this long (a starved process) no longer delays
# the close: the channel is closed anyway and the poller's ValueError is grpcio's.
POLLER_PATIENCE = 30.0
_STOP = object()


class Reaper:
    """``close(channel)`` returns at once; the channel is closed on this thread."""

    def __init__(self, pool_name: str) -> None:
        self._pool_name = pool_name
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._pending: list[tuple[PooledChannel, float]] = []
        self._parking = Parking()
        self.thread = threading.Thread(
            target=self._run, name=f"grpc_pool-reaper-{pool_name}", daemon=True
        )

    def start(self) -> None:
        self.thread.start()

    def close(self, channel: PooledChannel) -> None:
        self._queue.put(channel)

    def stop(self) -> None:
        """Close what is pending, then end (``join`` waits for it)."""
        self._queue.put(_STOP)

    def join(self, deadline: float) -> None:
        if self.thread.ident is None:  # never started
            return
        self.thread.join(max(0.0, deadline - time.monotonic()))
        if self.thread.is_alive():
            logger.warning("pool %s: reaper still closing channels", self._pool_name)

    # -- fork (Parkable) ----------------------------------------------------------------
    def park(self) -> None:
        """Before fork: close nothing (a grpcio call) until ``unpark``."""
        self._parking.request()
        self._queue.put(None)  # wake it

    def parked(self, deadline: float) -> bool:
        """Parked (or not running), and no pending channel's poller still runs."""
        if not self._parking.wait(deadline, self.thread):
            return False
        return all(channel._wait_for_poller(deadline) for channel, _ in list(self._pending))

    def unpark(self) -> None:
        self._parking.release()

    # -- thread -------------------------------------------------------------------------
    def _run(self) -> None:
        stopping = False
        while not stopping or self._pending:
            try:
                item = self._queue.get(timeout=_RECHECK if self._pending else None)
            except queue.Empty:
                item = None
            while True:  # take everything queued
                if item is _STOP:
                    stopping = True
                elif item is not None:
                    channel: PooledChannel = item  # type: ignore[assignment]
                    self._pending.append((channel, time.monotonic() + POLLER_PATIENCE))
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            if self._parking.wanted:
                self._parking.park_here()
                continue
            self._close_ready(force=False)
        self._parking.ended()

    def _close_ready(self, force: bool) -> None:
        now = time.monotonic()
        keep: list[tuple[PooledChannel, float]] = []
        for channel, give_up in self._pending:
            if channel._poller_running() and now < give_up and not force:
                keep.append((channel, give_up))
                continue
            if channel._poller_running():
                logger.warning(
                    "pool %s: closing %s although grpcio's poller still runs after %gs",
                    self._pool_name,
                    channel.channel_id,
                    POLLER_PATIENCE,
                )
            try:
                channel._close_grpc()
            except Exception:
                logger.exception("pool %s: closing %s failed", self._pool_name, channel.channel_id)
        self._pending = keep
