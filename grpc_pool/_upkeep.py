"""What a worker does to keep its connection good besides watching it: health
checks, priming, max-age refresh and moves to another backend (warm swaps: the
new channel is ready before the old one retires). A part of ``Worker`` (mixed in),
on the worker's own thread."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import _health
from ._backoff import Backoff
from ._channel import PooledChannel
from ._commands import HealthResult, RefreshDone, Register
from ._config import PoolConfig
from ._health import HealthCheck, HealthStatus

__all__ = ["Upkeep"]


class Upkeep:
    """``_replace``, ``_age_deadline``, ``_prime``, ``_watched`` and ``_check_health``."""

    slot: int
    _config: PoolConfig
    _stopped: bool
    _watching: bool
    _backoff: Backoff
    _health_call: HealthCheck | None
    _post: Callable[[object], None]

    if TYPE_CHECKING:

        def _connect(self) -> tuple[PooledChannel, Callable[[Any], None], float, bool] | str: ...
        def _subscribe(self, channel: PooledChannel, callback: Callable[[Any], None]) -> None: ...
        def _unsubscribe(self, channel: PooledChannel, callback: Callable[[Any], None]) -> None: ...
        def _watch(
            self, channel: PooledChannel, refresh_at: float | None, serving: bool
        ) -> tuple[str | None, bool]: ...
        def _log(self, level: int, message: str, *args: object) -> None: ...

    def _replace(
        self, old: PooledChannel, old_callback: Callable[[Any], None]
    ) -> tuple[PooledChannel, Callable[[Any], None], bool] | None:
        """Max-age refresh (the writer granted it): connect a new channel while the
        old one serves, then swap them in one Register (the writer retires the old)."""
        try:
            connected = None if self._stopped else self._connect()
            if connected is None or isinstance(connected, str):
                if connected is not None:
                    self._log(logging.INFO, "refresh failed (%s); keeping the channel", connected)
                # Events of the old channel were skipped meanwhile: resubscribing
                # delivers its current state again.
                self._unsubscribe(old, old_callback)
                self._subscribe(old, old_callback)
                return None
            channel, callback, took, serving = connected
            self._post(Register(self, self.slot, channel, took, serving))
            self._unsubscribe(old, old_callback)
            self._backoff.reset()
            return channel, callback, serving
        finally:
            self._post(RefreshDone(self, self.slot))

    def _age_deadline(self, since: float) -> float | None:
        age = self._config.max_connection_age
        return None if age is None else since + age * random.uniform(0.8, 1.0)

    def _prime(self, channel: PooledChannel) -> str | None:
        primer = self._config.primer
        if primer is None or self._stopped:
            return None
        try:
            primer(channel)
        except Exception as exc:
            return f"primer failed: {type(exc).__name__}: {exc}"
        return None

    def _watched(
        self, channel: PooledChannel, refresh_at: float | None, serving: bool
    ) -> tuple[str | None, bool]:
        """``_watch``, marked: a move that arrives meanwhile swaps warm (``_replace``
        posts its RefreshDone), one that arrives elsewhere is only remembered."""
        self._watching = True
        try:
            return self._watch(channel, refresh_at, serving)
        finally:
            self._watching = False

    def _check_health(
        self, channel: PooledChannel, post: bool = True
    ) -> tuple[HealthStatus, float] | None:
        """grpc.health.v1.Health/Check over this very channel (uncounted): the
        answer and its duration; None when health checks are off or stopped."""
        config = self._config
        if not config.health_check_interval or self._stopped:
            return None
        started = time.monotonic()
        call = HealthCheck(channel._raw, config.health_check_service, config.health_check_timeout)
        self._health_call = call
        try:
            if self._stopped:  # stop() may have missed the call
                call.cancel()
            result = call.result(), time.monotonic() - started
        finally:
            self._health_call = None
        if post:
            self._post(HealthResult(self, self.slot, channel, *_health.verdict(result)))
        return result
