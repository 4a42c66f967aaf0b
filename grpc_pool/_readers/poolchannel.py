"""PoolChannel: the whole pool as one ``grpc.Channel``; every RPC picks a pooled channel.

Generated stubs, GAPIC transports and ``grpc.intercept_channel`` keep one channel
for their whole life and build their multi-callables once; here those pick a
ready pooled channel per invocation (``_multicallable.py``), so RPCs spread over
every connection and never reach a retired one.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, Protocol

import grpc
from typing_extensions import Self, override

from .._channel.gate import STREAM_STREAM, STREAM_UNARY, UNARY_STREAM, UNARY_UNARY
from .._channel.pooled import bounded_put
from .multicallable import KINDS, PoolMultiCallable
from .reader import Reader
from .retry import Retrier

__all__ = ["Owner", "PoolChannel"]

logger = logging.getLogger(__name__)

_Connectivity = grpc.ChannelConnectivity
# Longest single wait of the connectivity thread, so it sees an unsubscribe.
_WATCH_TICK = 1.0


class Owner(Protocol):
    """What a PoolChannel needs of the pool it fronts (the pool itself)."""

    name: str

    def close(self) -> None: ...


class _Watch:
    """Delivers the pool's connectivity to ``subscribe`` callbacks from a thread of
    its own (never the writer's), woken by the writer's publish; it runs only
    while someone is subscribed and ends after delivering SHUTDOWN."""

    def __init__(self, reader: Reader, name: str) -> None:
        self._reader = reader
        self._name = name
        self._wake = threading.Event()  # a publish, a close, a (un)subscribe
        reader.on_publish = self._wake.set
        self._lock = threading.Lock()
        # Each callback with the last state it was given (None: not yet).
        self._callbacks: list[list[Any]] = []
        self.thread: threading.Thread | None = None

    def subscribe(self, callback: Callable[[grpc.ChannelConnectivity], None]) -> None:
        with self._lock:
            self._callbacks.append([callback, None])
            thread = self.thread
            if thread is None or not thread.is_alive():
                thread = self.thread = threading.Thread(
                    target=self._run,
                    name=f"grpc_pool-connectivity-{self._name}",
                    daemon=True,
                )
                thread.start()
        self._wake.set()

    def unsubscribe(self, callback: Callable[[grpc.ChannelConnectivity], None]) -> None:
        with self._lock:
            self._callbacks = [entry for entry in self._callbacks if entry[0] != callback]
        self._wake.set()

    def _due(self, state: grpc.ChannelConnectivity) -> list[list[Any]] | None:
        """Callbacks not yet told ``state``; None once nobody is subscribed (the thread ends)."""
        with self._lock:
            if not self._callbacks:
                self.thread = None
                return None
            return [entry for entry in self._callbacks if entry[1] is not state]

    def _run(self) -> None:
        reader = self._reader
        while True:
            while True:
                self._wake.clear()  # before the read: a publish after it wakes the wait
                state = reader.connectivity()
                due = self._due(state)
                if due is None:
                    return
                if due:
                    break
                self._wake.wait(_WATCH_TICK)
            for entry in due:
                entry[1] = state
                try:
                    entry[0](state)
                except Exception:
                    logger.exception("%r: connectivity callback %r failed", reader.owner, entry[0])
            if state is _Connectivity.SHUTDOWN:
                with self._lock:
                    self._callbacks = []
                    self.thread = None
                return

    def join(self, timeout: float) -> None:
        thread = self.thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)


class PoolChannel(grpc.Channel):
    """The pool as one ``grpc.Channel``: build a stub (or hand a GAPIC transport,
    or ``grpc.intercept_channel``) once; every RPC picks a ready pooled channel.

    Multi-callables pick per invocation (``__call__``, ``with_call``, ``future``)
    through the pool's strategy, in-flight accounting, drain and ejection, so one
    built before any channel is ready, or kept across reconnects, scale-down and
    max-age refresh, keeps working and never touches a retired channel. With no
    channel ready, an RPC with ``wait_for_ready=True`` waits for one within its
    own timeout (then fails ``DEADLINE_EXCEEDED``); any other fails at once with
    ``NoChannelAvailable`` (a ``grpc.RpcError``, ``UNAVAILABLE``; for ``future()``
    a failed future). Multi-callables are cached by value, at most 256.

    ``pool.channel`` does not own the pool: its ``close()`` does nothing. The one
    that ``grpc_pool.insecure_channel``/``secure_channel`` return owns it: its
    ``close()`` (and ``with`` exit) close the pool.
    """

    def __init__(
        self, reader: Reader, pool: Owner, retrier: Retrier, owns_pool: bool = False
    ) -> None:
        self.pool = pool
        self._reader = reader
        self._retrier = retrier
        self._owns_pool = owns_pool
        self._callables: dict[Any, PoolMultiCallable] = {}
        self._watch = _Watch(reader, pool.name)

    def _multi_callable(
        self, kind: str, method: str, serializer: Any, deserializer: Any, registered: bool
    ) -> Any:
        key = (kind, method, serializer, deserializer, bool(registered))
        callables = self._callables
        try:
            found = callables.get(key)
        except TypeError:  # an unhashable serializer: a new one each time
            return KINDS[kind](self._reader, self._retrier, key)
        if found is None:
            found = KINDS[kind](self._reader, self._retrier, key)
            bounded_put(callables, key, found)
        return found

    @override
    def unary_unary(
        self,
        method: str,
        request_serializer: Any = None,
        response_deserializer: Any = None,
        _registered_method: bool | None = False,
    ) -> Any:
        return self._multi_callable(
            UNARY_UNARY, method, request_serializer, response_deserializer, bool(_registered_method)
        )

    @override
    def unary_stream(
        self,
        method: str,
        request_serializer: Any = None,
        response_deserializer: Any = None,
        _registered_method: bool | None = False,
    ) -> Any:
        return self._multi_callable(
            UNARY_STREAM,
            method,
            request_serializer,
            response_deserializer,
            bool(_registered_method),
        )

    @override
    def stream_unary(
        self,
        method: str,
        request_serializer: Any = None,
        response_deserializer: Any = None,
        _registered_method: bool | None = False,
    ) -> Any:
        return self._multi_callable(
            STREAM_UNARY,
            method,
            request_serializer,
            response_deserializer,
            bool(_registered_method),
        )

    @override
    def stream_stream(
        self,
        method: str,
        request_serializer: Any = None,
        response_deserializer: Any = None,
        _registered_method: bool | None = False,
    ) -> Any:
        return self._multi_callable(
            STREAM_STREAM,
            method,
            request_serializer,
            response_deserializer,
            bool(_registered_method),
        )

    @override
    def subscribe(
        self, callback: Callable[[grpc.ChannelConnectivity], None], try_to_connect: bool = False
    ) -> None:
        """Call ``callback`` with the pool's connectivity now and on every change:
        READY while at least one channel is ready, CONNECTING while starting,
        TRANSIENT_FAILURE while down, SHUTDOWN once closed. The pool always
        connects, so ``try_to_connect`` changes nothing. Callbacks run on a
        thread of the pool's, one at a time."""
        self._watch.subscribe(callback)

    @override
    def unsubscribe(self, callback: Callable[[grpc.ChannelConnectivity], None]) -> None:
        self._watch.unsubscribe(callback)

    @override
    def close(self) -> None:
        """Closes the pool if this channel owns it (``grpc_pool.insecure_channel``);
        on ``pool.channel`` does nothing: the pool owns its channels."""
        if self._owns_pool:
            self.pool.close()
        else:
            logger.debug("close() on %r ignored: pool.channel does not own the pool", self)

    def _close(self) -> None:
        self.close()

    @override
    def __enter__(self) -> Self:
        return self

    @override
    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        owner = " (owns the pool)" if self._owns_pool else ""
        return f"<PoolChannel over {self.pool!r}{owner}>"
