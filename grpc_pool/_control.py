"""The pool's round trips to the writer: resizing (``scale_up``, ``scale_down``,
``resize``) and commands run on the writer thread. The writer computes the new
size, so nothing else can interleave; one scaling call at a time."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

from ._base.errors import InvalidConfig, PoolClosed, PoolTimeout, ScalingInProgress, WouldEmptyPool
from ._config.validate import MAX_SIZE, check_count
from ._contract.commands import Call, Reply, Resize
from ._readers.reader import Reader

__all__ = ["COMMAND_TIMEOUT", "Control"]

T = TypeVar("T")
# Bound on the writer answering a command that does no I/O.
COMMAND_TIMEOUT = 30.0


class Control:
    """Commands to the pool's current writer (``post``), answered through a ``Reply``.

    before: called before each command: the one revive point after a fork.
    """

    def __init__(
        self, reader: Reader, post: Callable[[object], None], before: Callable[[], None]
    ) -> None:
        self._reader = reader
        self.post = post
        self._before = before
        self.scaling = threading.Lock()

    def scale_up(self, n: int) -> int:
        check_count("n", n, MAX_SIZE)
        owner = self._reader.owner

        def target(size: int) -> int:
            if size + n > MAX_SIZE:
                raise InvalidConfig(
                    f"n={n!r} is not allowed: scale_up would make {size + n} slots "
                    f"(expected 1..{MAX_SIZE - size})",
                    owner,
                )
            return size + n

        return self._scale(target, "scale_up", n)

    def scale_down(self, n: int) -> int:
        check_count("n", n, MAX_SIZE)
        owner = self._reader.owner

        def target(size: int) -> int:
            if size - n < 1:
                raise WouldEmptyPool(
                    f"n={n!r} is not allowed: scale_down would leave {size - n} slots "
                    f"(expected 1..{size - 1})",
                    owner,
                )
            return size - n

        return self._scale(target, "scale_down", n)

    def resize(self, size: int) -> int:
        check_count("size", size, MAX_SIZE)
        return self._scale(lambda _: size, "resize", size)

    def _scale(self, target: Callable[[int], int], operation: str, requested: int) -> int:
        self._before()
        if not self.scaling.acquire(blocking=False):
            raise ScalingInProgress("another scaling call is running", self._reader.owner)
        try:
            if self._reader.closed:
                raise PoolClosed("pool is closed", self._reader.owner)
            reply = Reply()
            # The writer computes the target: no other writer-side change can interleave.
            self.post(Resize(target, reply, operation, requested))
            return int(self.wait(reply))
        finally:
            self.scaling.release()

    def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the writer thread and return its result."""
        self._before()
        reply = Reply()
        self.post(Call(fn, reply))
        return self.wait(reply)  # type: ignore[no-any-return]

    def wait(self, reply: Reply) -> Any:
        if not reply.wait(COMMAND_TIMEOUT):
            raise PoolTimeout(
                f"the writer did not answer within {COMMAND_TIMEOUT:g}s", self._reader.owner
            )
        if reply.error is not None:
            raise reply.error
        return reply.value
