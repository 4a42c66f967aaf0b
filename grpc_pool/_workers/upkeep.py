"""What keeps a worker's connection good besides watching it: health checks over
the channel itself, priming a new channel, and the max-age deadline. Owned by
one ``Worker``, run on its thread."""

from __future__ import annotations

import random
import time

from .._channel.pooled import PooledChannel
from .._config.config import PoolConfig
from .health import HealthCheck, HealthStatus

__all__ = ["Upkeep"]


class Upkeep:
    """Health checks, priming and max-age of one slot's channels."""

    __slots__ = ("_call", "_config", "stopped")

    def __init__(self, config: PoolConfig) -> None:
        self._config = config
        self._call: HealthCheck | None = None
        self.stopped = False  # set by stop(): no new check or primer starts

    def stop(self) -> None:
        """From any thread: end a check in progress now (do not wait for its timeout)."""
        self.stopped = True
        call = self._call
        if call is not None:
            call.cancel()

    def age_deadline(self, since: float) -> float | None:
        """When a channel up since ``since`` is due for replacement (None: never)."""
        age = self._config.max_connection_age
        return None if age is None else since + age * random.uniform(0.8, 1.0)

    def prime(self, channel: PooledChannel) -> str | None:
        """Run the user's primer; why it failed, or None."""
        primer = self._config.primer
        if primer is None or self.stopped:
            return None
        try:
            primer(channel)
        except Exception as exc:
            return f"primer failed: {type(exc).__name__}: {exc}"
        return None

    def check_health(self, channel: PooledChannel) -> tuple[HealthStatus, float] | None:
        """grpc.health.v1.Health/Check over this very channel (uncounted): the
        answer and its duration; None when health checks are off or stopped."""
        config = self._config
        if not config.health_check_interval or self.stopped:
            return None
        started = time.monotonic()
        call = HealthCheck(channel._raw, config.health_check_service, config.health_check_timeout)
        self._call = call
        try:
            if self.stopped:  # stop() may have missed the call
                call.cancel()
            return call.result(), time.monotonic() - started
        finally:
            self._call = None
