"""Resizing a pool: ``scale_up``, ``scale_down``, ``resize`` and commands run on the
writer thread (the writer computes the new size: nothing else can interleave).
A part of ``Pool`` (mixed in)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from ._commands import Call, Reply, Resize
from ._errors import InvalidConfig, PoolClosed, PoolTimeout, ScalingInProgress, WouldEmptyPool
from ._validate import MAX_SIZE, check_count

if TYPE_CHECKING:
    from ._writer import Writer

__all__ = ["Scaling"]

T = TypeVar("T")
# Bound on the writer answering a command that does no I/O.
COMMAND_TIMEOUT = 30.0


class Scaling:
    """The pool's scaling calls and its command round trips to the writer."""

    if not TYPE_CHECKING:  # slotted like Pool; the fields are Pool's own slots
        __slots__ = ()

    _closed: bool
    _forked: bool
    _scaling: threading.Lock
    _writer: Writer

    if TYPE_CHECKING:

        def _revive(self) -> None: ...

    def scale_up(self, n: int) -> int:
        """Add ``n`` slots (an int >= 1); return the new expected size.

        Raises ``InvalidConfig`` if the size would exceed 1,024 (see ``PoolConfig``).
        """
        check_count("n", n, MAX_SIZE)

        def target(size: int) -> int:
            if size + n > MAX_SIZE:
                raise InvalidConfig(
                    f"n={n!r} is not allowed: scale_up would make {size + n} slots "
                    f"(expected 1..{MAX_SIZE - size})",
                    self,
                )
            return size + n

        return self._scale(target, "scale_up", n)

    def scale_down(self, n: int) -> int:
        """Remove ``n`` slots (an int >= 1), not-ready and least loaded first.

        Their channels leave the rotation at once and close after ``retire_grace``.
        Raises ``WouldEmptyPool`` (an ``InvalidConfig``) if fewer than 1 slot would remain.
        """
        check_count("n", n, MAX_SIZE)

        def target(size: int) -> int:
            if size - n < 1:
                raise WouldEmptyPool(
                    f"n={n!r} is not allowed: scale_down would leave {size - n} slots "
                    f"(expected 1..{size - 1})",
                    self,
                )
            return size - n

        return self._scale(target, "scale_down", n)

    def resize(self, size: int) -> int:
        """Set the expected size (an int 1..1,024); return it."""
        check_count("size", size, MAX_SIZE)
        return self._scale(lambda _: size, "resize", size)

    def _scale(self, target: Callable[[int], int], operation: str, requested: int) -> int:
        if self._forked:
            self._revive()
        if not self._scaling.acquire(blocking=False):
            raise ScalingInProgress("another scaling call is running", self)
        try:
            if self._closed:
                raise PoolClosed("pool is closed", self)
            reply = Reply()
            # The writer computes the target: no other writer-side change can interleave.
            self._writer.queue.put(Resize(target, reply, operation, requested))
            return int(self._await(reply))
        finally:
            self._scaling.release()

    def _call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the writer thread and return its result."""
        reply = Reply()
        self._writer.queue.put(Call(fn, reply))
        return self._await(reply)  # type: ignore[no-any-return]

    def _await(self, reply: Reply) -> Any:
        if not reply.wait(COMMAND_TIMEOUT):
            raise PoolTimeout(f"the writer did not answer within {COMMAND_TIMEOUT:g}s", self)
        if reply.error is not None:
            raise reply.error
        return reply.value
