"""Messages to the writer thread. Workers and the pool only ever post these.

Worker messages carry the worker object: a stopped worker's late message is
told apart from the one of a new worker that reuses its slot id.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from .state import SlotStatus

C = TypeVar("C")  # the channel type (PooledChannel)

__all__ = [
    "Call",
    "Close",
    "HealthResult",
    "Lost",
    "Pause",
    "Progress",
    "RefreshDone",
    "RefreshRequest",
    "Register",
    "Reply",
    "Resize",
    "Resolved",
    "Resume",
    "SetPick",
    "Wake",
]


class Reply:
    """A one-shot answer from the writer to a waiting caller."""

    __slots__ = ("_done", "error", "value")

    def __init__(self) -> None:
        self._done = threading.Event()
        self.value: Any = None
        self.error: BaseException | None = None

    def set(self, value: Any = None, error: BaseException | None = None) -> None:
        self.value, self.error = value, error
        self._done.set()

    def wait(self, timeout: float) -> bool:
        return self._done.wait(timeout)


@dataclass(frozen=True, slots=True)
class Register(Generic[C]):
    """A worker's channel is READY: it becomes the slot's channel (the old one is
    retired), in rotation when ``serving``, else kept out of it until a
    ``HealthResult`` says it serves."""

    worker: object
    slot: int
    channel: C
    duration: float  # seconds from the attempt's start (or from going IDLE) to READY
    serving: bool = True


@dataclass(frozen=True, slots=True)
class Lost(Generic[C]):
    """A worker's registered channel lost its connection: take it out, retire it."""

    worker: object
    slot: int
    channel: C
    reason: str
    retry_in: float  # the worker's delay before its next attempt


@dataclass(frozen=True, slots=True)
class Progress:
    """A worker's progress: CONNECTING, RECONNECTING or BACKOFF (after a failure)."""

    worker: object
    slot: int
    state: SlotStatus
    error: str | None = None
    delay: float | None = None


@dataclass(frozen=True, slots=True)
class HealthResult(Generic[C]):
    """A health check over a slot's channel: its status and whether that is healthy.

    ``answered``: the server answered over the connection, so it is kept whatever
    the status: out of rotation while not healthy, back in once healthy. Without
    an answer the worker reports ``Lost`` next.
    """

    worker: object
    slot: int
    channel: C
    status: str
    healthy: bool
    duration: float
    answered: bool = True


@dataclass(frozen=True, slots=True)
class RefreshRequest:
    """A slot's channel is past its max age: may it be replaced now?"""

    worker: object
    slot: int


@dataclass(frozen=True, slots=True)
class RefreshDone:
    """The refresh the writer granted ended (replaced or not)."""

    worker: object
    slot: int


@dataclass(frozen=True, slots=True)
class Pause:
    """Before fork: the writer asks every thread of the pool to park (it never waits
    itself), puts them in ``parked`` and sets ``dispatched``; the forking thread
    then waits for each (``Parkable.parked``)."""

    dispatched: threading.Event
    parked: list[Any]  # Parkable


@dataclass(frozen=True, slots=True)
class Resume:
    """After fork, in the parent: everything paused goes on."""


@dataclass(frozen=True, slots=True)
class SetPick:
    """Listeners changed: readers' picker samples GetChannelEvents or not."""

    reply: Reply


@dataclass(frozen=True, slots=True)
class Resize:
    """Set the expected size to ``target(current size)``; the reply is the new size."""

    target: Callable[[int], int]
    reply: Reply
    operation: str = "resize"  # scale_up, scale_down or resize (the event's name)
    requested: int = 0


@dataclass(frozen=True, slots=True)
class Close:
    grace: float
    reply: Reply


@dataclass(frozen=True, slots=True)
class Call:
    """Run ``fn`` on the writer thread (extensions and tests)."""

    fn: Callable[[], Any]
    reply: Reply


@dataclass(frozen=True, slots=True)
class Resolved:
    """The resolver thread's answer, a command for the writer: the addresses, or
    why there are none (the writer then keeps the last good ones)."""

    addresses: tuple[str, ...]
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Wake:
    """Nothing to do but look at the retiring channels again."""
