"""PooledChannel: the grpc.Channel handed to callers, and how one is built."""

from __future__ import annotations

import contextlib
import importlib
import logging
import time
from collections.abc import Callable, Hashable
from typing import Any

import grpc
from typing_extensions import Self, override

from .._base.errors import ChannelRetired, GrpcPoolError, PoolClosed
from .._base.redact import redact_target
from . import channelz
from .calls import WRAPPERS, BoundRetry
from .gate import STREAM_STREAM, STREAM_UNARY, UNARY_STREAM, UNARY_UNARY, Gate, RpcCounter
from .signals import ChannelSignals

__all__ = ["CACHE_LIMIT", "CYGRPC", "MethodKey", "PooledChannel", "Reroute", "bounded_put"]

logger = logging.getLogger(__name__)

# Entries per cache of multi-callables or stubs: code that builds one per call
# (a lambda stub factory, GAPIC's per-RPC intercept_channel) must not grow memory.
CACHE_LIMIT = 256

# grpcio's Cython core module (private; no type stubs): its fork state, read here
# and by ``_fork``.
CYGRPC: Any = importlib.import_module("grpc._cython.cygrpc")

# (kind, method, request_serializer, response_deserializer, registered): one multi-callable.
MethodKey = tuple[str, str, Any, Any, bool]
# reroute(channel, key): the pool's retry for ``key``'s multi-callable on ``channel``
# (None: that method is never sent again).
Reroute = Callable[["PooledChannel", MethodKey], "BoundRetry | None"]


def bounded_put(cache: dict[Any, Any], key: Hashable, value: Any) -> None:
    """Insert into a bounded cache, dropping the oldest entry when full."""
    if len(cache) >= CACHE_LIMIT:
        with contextlib.suppress(StopIteration, KeyError, RuntimeError):  # a racing thread
            del cache[next(iter(cache))]
    cache[key] = value


class PooledChannel(grpc.Channel):
    """A pooled ``grpc.Channel``: use it like any channel; the pool owns its life.

    ``close()`` and ``with channel:`` do not close it (the pool retires and
    closes channels itself, after draining), so a caller cannot break the pool.
    Once the pool has closed it, building a multi-callable or starting an RPC on
    it raises ``ChannelRetired`` (or ``PoolClosed``), never grpcio's ``ValueError``.
    """

    __slots__ = (
        "_callables",
        "_counter",
        "_gate",
        "_raw",
        "_reroute",
        "_rpc",
        "_stubs",
        "channel_id",
        "channelz_id",
        "slot",
        "target",
    )

    def __init__(
        self,
        raw: grpc.Channel,
        rpc: grpc.Channel,
        counter: RpcCounter | None,
        slot: int,
        target: str,
        channel_id: str,
        reroute: Reroute | None = None,
    ) -> None:
        self._raw = raw
        # The pool's retry for the RPCs of every kind on this channel
        # (reroute(channel, key) -> what its multi-callable hands them to); None: off.
        self._reroute = reroute
        self._rpc = rpc
        self._counter = counter
        self._gate: Gate = counter if counter is not None else Gate()
        self._callables: dict[MethodKey, Any] = {}  # by value: see CACHE_LIMIT
        self._stubs: dict[Any, Any] = {}  # Pool.stub() cache: dies with the channel
        self.slot = slot
        self.target = target
        self.channel_id = channel_id
        # grpcio's channelz id of ``_raw`` when the pool counts its connections
        # (connection scaling, see channelz.py), else None.
        self.channelz_id: int | None = None

    # -- grpc.Channel --------------------------------------------------------
    @override
    def unary_unary(
        self,
        method: str,
        request_serializer: Any = None,
        response_deserializer: Any = None,
        _registered_method: bool = False,
    ) -> Any:
        key = (UNARY_UNARY, method, request_serializer, response_deserializer, _registered_method)
        return self._callable(key)

    @override
    def unary_stream(
        self,
        method: str,
        request_serializer: Any = None,
        response_deserializer: Any = None,
        _registered_method: bool = False,
    ) -> Any:
        key = (UNARY_STREAM, method, request_serializer, response_deserializer, _registered_method)
        return self._callable(key)

    @override
    def stream_unary(
        self,
        method: str,
        request_serializer: Any = None,
        response_deserializer: Any = None,
        _registered_method: bool = False,
    ) -> Any:
        key = (STREAM_UNARY, method, request_serializer, response_deserializer, _registered_method)
        return self._callable(key)

    @override
    def stream_stream(
        self,
        method: str,
        request_serializer: Any = None,
        response_deserializer: Any = None,
        _registered_method: bool = False,
    ) -> Any:
        key = (STREAM_STREAM, method, request_serializer, response_deserializer, _registered_method)
        return self._callable(key)

    def _callable(self, key: MethodKey) -> Any:
        """The counted multi-callable for ``key``, built once per channel."""
        gate = self._gate
        if gate.closed:
            raise gate.refused()
        callables = self._callables
        try:
            found = callables.get(key)
        except TypeError:  # an unhashable serializer: built every time
            return self._build(key)
        if found is None:
            found = self._build(key)
            bounded_put(callables, key, found)
        return found

    def _build(self, key: MethodKey) -> Any:
        kind, method, serializer, deserializer, registered = key
        gate = self._gate
        with gate._build_lock:  # never overlaps _refuse: no build on a closed channel
            if gate.closed:
                raise gate.refused()
            factory = getattr(self._rpc, kind)
            if registered:
                inner = factory(method, serializer, deserializer, _registered_method=True)
            else:  # grpcio before 1.63 has no _registered_method
                inner = factory(method, serializer, deserializer)
        reroute = self._reroute
        return WRAPPERS[kind](inner, gate, None if reroute is None else reroute(self, key))

    @override
    def subscribe(
        self, callback: Callable[[grpc.ChannelConnectivity], None], try_to_connect: bool = False
    ) -> None:
        self._raw.subscribe(callback, try_to_connect=try_to_connect)

    @override
    def unsubscribe(self, callback: Callable[[grpc.ChannelConnectivity], None]) -> None:
        self._raw.unsubscribe(callback)

    @override
    def close(self) -> None:
        """Does nothing: the pool closes its channels (``Pool.close``)."""
        logger.debug("close() on pooled channel %s ignored: the pool owns it", self.channel_id)

    def _close(self) -> None:
        """Does nothing: some libraries call ``_close()`` on the channels they were
        given (grpc-requests does); the pool's own close is ``_shut`` then ``_close_grpc``."""
        self.close()

    @override
    def __enter__(self) -> Self:
        return self

    @override
    def __exit__(self, *exc_info: object) -> None:
        return None

    # -- pool side -----------------------------------------------------------
    @property
    def closed(self) -> bool:
        """True once the pool has closed this channel."""
        return self._gate.closed

    @property
    def in_flight(self) -> int | None:
        """RPCs started and not finished on this channel (None when not counted)."""
        return self._counter.in_flight if self._counter is not None else None

    @property
    def rpcs_total(self) -> int | None:
        """RPCs ever started on this channel (None when not counted)."""
        return self._counter.total if self._counter is not None else None

    @property
    def connections(self) -> int | None:
        """TCP connections open on this channel, read from channelz now; None unless
        the pool counts them (connection scaling, see channelz.py) or when unreadable."""
        return channelz.connections(self.channelz_id) if self.channelz_id is not None else None

    @property
    def signals(self) -> ChannelSignals | None:
        """A read-only snapshot of what this channel's counting saw (latency, in
        flight, outcomes), for custom strategies; None when not counted."""
        counter = self._counter
        return counter.signals() if counter is not None else None

    @property
    def load(self) -> int:
        """In-flight RPCs (0 when not counted)."""
        counter = self._counter
        return counter.in_flight if counter is not None else 0

    def _shut(self, pool_closed: bool = False) -> None:
        """The pool's close, first half (the writer's, no grpcio call): from now on
        every new RPC and multi-callable build raises a pool error. A build under
        way finishes first (it holds the build lock), so none reaches a closed channel."""
        if pool_closed:
            error: GrpcPoolError = PoolClosed(f"channel {self.channel_id}: the pool is closed")
        else:
            error = ChannelRetired(
                f"channel {self.channel_id} was retired and closed by the pool; "
                "pick a channel again (get_channel()) or use pool.channel"
            )
        gate = self._gate
        with gate._build_lock:
            gate.shut(error)

    def _close_grpc(self) -> None:
        """The pool's close, second half (the reaper's): close the grpc channel, which
        cancels what still runs on it. Call once its poller has ended: grpcio's
        close() clears subscriptions but not a pending try_to_connect, and its poller
        would then call into the closed channel and raise ValueError on gRPC's thread."""
        self._raw.close()

    def _why_not_connected(self) -> str:
        """The transport's last error: a fail-fast RPC on a failed channel returns it at
        once (connection refused, TLS handshake failure, ...). Never counted as an RPC."""
        try:
            probe: grpc.UnaryUnaryMultiCallable[bytes, bytes] = self._raw.unary_unary(_PROBE)
            probe(b"", timeout=_PROBE_TIMEOUT)
        except grpc.RpcError as exc:
            details = exc.details() if isinstance(exc, grpc.Call) else None
            return details or str(exc)
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"
        return "unknown"

    def _kick(self) -> None:
        """Ask an IDLE channel to connect through grpcio's subscribe() (its poller sees
        try_to_connect): the ``SubscribeWatch`` fallback's kick."""
        self._raw.subscribe(_noop, try_to_connect=True)
        self._raw.unsubscribe(_noop)

    def _poller_running(self) -> bool:
        """Whether grpcio's connectivity poller thread of this channel is still alive."""
        polling = getattr(_connectivity_state(self._raw), "polling", None)
        if polling is None:
            _warn_no_poller_flag()
        return bool(polling)

    def _wait_for_poller(self, deadline: float) -> bool:
        """Wait until grpcio's connectivity poller thread of this channel has ended
        (at once when none runs: the pool's own watcher starts none), or grpcio's own
        fork handler holds it (before fork, see ``grpc_fork_holds_threads``).

        It ends within two 0.2 s ticks once nobody is subscribed. Also needed
        before fork: a thread inside gRPC at fork time can crash the child.
        """
        while self._poller_running() and not grpc_fork_holds_threads():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True

    def __repr__(self) -> str:
        target = redact_target(self.target)
        return f"<PooledChannel {self.channel_id} target={target!r} slot={self.slot}>"


# A method no server has: the probe fails fast on a failed channel, never reaches a server.
_PROBE = "/grpc_pool.Probe/WhyNotConnected"
_PROBE_TIMEOUT = 1.0


def _noop(_state: grpc.ChannelConnectivity) -> None:
    pass


_warned_no_poller_flag = False


def _warn_no_poller_flag() -> None:
    """Once per process: this grpcio has no ``_connectivity_state.polling`` (a private
    attribute, checked by tests/test_compat.py on every grpcio CI runs)."""
    global _warned_no_poller_flag
    if not _warned_no_poller_flag:
        _warned_no_poller_flag = True
        logger.warning(
            "grpcio %s: channel._connectivity_state.polling not found; grpc_pool cannot "
            "tell when grpcio's connectivity poller ends, so closing a channel or forking "
            "may race it (ValueError on gRPC's thread, or a crashed child)",
            getattr(grpc, "__version__", "?"),
        )


def grpc_fork_holds_threads() -> bool:
    """Whether grpcio's own before-fork handler (``GRPC_ENABLE_FORK_SUPPORT``) has run
    and holds its threads: every poller then waits outside gRPC core, in
    ``cygrpc.block_if_fork_in_progress``, and ends only after the fork.

    Python runs before-fork handlers in the reverse order of registration; the pool
    installs its own after grpcio's (``_fork.register_handlers``) so that they run
    first, but should grpcio's run first all the same, waiting for a poller to end
    would wait out the fork's ``PAUSE_TIMEOUT`` (5.2 s per fork in 21 of 50
    runs on grpcio 1.60, when the pool's first channel raced ``Pool()``). Reads
    grpcio's private ``cygrpc._fork_state.fork_in_progress`` (tests/test_compat.py
    checks it); False when absent, or when grpcio's handler gave up (its threads
    may be inside gRPC).
    """
    state = getattr(CYGRPC, "_fork_state", None)
    return bool(getattr(state, "fork_in_progress", False)) and not getattr(
        CYGRPC, "_fork_handler_failed", False
    )


def _connectivity_state(channel: object) -> object:
    """grpcio's private connectivity state of a channel, through wrappers that keep
    the real channel as ``_channel`` (OpenTelemetry's instrumentation patches
    ``grpc.insecure_channel`` to return one); None if not found."""
    for _ in range(4):
        state = getattr(channel, "_connectivity_state", None)
        if state is not None:
            return state
        channel = getattr(channel, "_channel", None)
        if channel is None:
            break
    return None
