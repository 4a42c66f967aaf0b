"""PooledChannel: the grpc.Channel handed to callers, and how one is built."""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import grpc

from ._config import PoolConfig

__all__ = ["PooledChannel", "build_channel"]

logger = logging.getLogger(__name__)

# Keys the pool sets on every channel; a user value for them is replaced.
LOCAL_SUBCHANNEL_POOL = "grpc.use_local_subchannel_pool"
CHANNEL_ID = "grpc_pool.channel_id"

_channel_ids = itertools.count(1)
_POLLER_EXIT_TIMEOUT = 1.0


class _RpcCounter:
    """Counts RPCs in flight on one channel: +1 at start, -1 when the call is done."""

    __slots__ = (
        "_eject_after",
        "_lock",
        "_streak",
        "in_flight",
        "on_idle",
        "on_unavailable",
        "peak",
        "total",
    )

    def __init__(self, eject_after: int = 0) -> None:
        self._lock = threading.Lock()
        self.in_flight = 0
        self.total = 0
        self.peak = 0
        # Set by the writer while the channel drains; called when in_flight drops to 0.
        self.on_idle: Callable[[], None] | None = None
        # Passive ejection: called after eject_after UNAVAILABLE in a row.
        self._eject_after = eject_after
        self._streak = 0
        self.on_unavailable: Callable[[], None] | None = None

    def _start(self) -> None:
        with self._lock:
            self.in_flight += 1
            self.total += 1
            if self.in_flight > self.peak:
                self.peak = self.in_flight

    def take_peak(self) -> int:
        """The most RPCs in flight at once since the last call (for autoscale)."""
        with self._lock:
            peak, self.peak = self.peak, self.in_flight
        return peak

    def _end(self, code: grpc.StatusCode | None) -> None:
        """An RPC ended with ``code`` (None: unknown, e.g. it never started)."""
        with self._lock:
            self.in_flight -= 1
            idle = self.in_flight == 0
        callback = self.on_idle
        if idle and callback is not None:
            callback()
        if self._eject_after and code is not None:
            self._count_unavailable(code is grpc.StatusCode.UNAVAILABLE)

    def _done(self, call: Any) -> None:
        """Done callback of a future or stream (on gRPC's thread)."""
        try:
            code = call.code()
        except Exception:  # no code to read: not evidence either way
            code = None
        self._end(code)

    def _count_unavailable(self, unavailable: bool) -> None:
        with self._lock:
            self._streak = self._streak + 1 if unavailable else 0
            eject = self._streak >= self._eject_after
            if eject:
                self._streak = 0
        callback = self.on_unavailable
        if eject and callback is not None:
            callback()


# Counting wraps the multi-callables directly (not a grpc interceptor): a blocking
# unary call costs one extra frame instead of grpcio's interceptor machinery.


if TYPE_CHECKING:  # generic in the stubs, plain classes at run time
    _UnaryUnary = grpc.UnaryUnaryMultiCallable[Any, Any]
    _StreamUnary = grpc.StreamUnaryMultiCallable[Any, Any]
    _UnaryStream = grpc.UnaryStreamMultiCallable[Any, Any]
    _StreamStream = grpc.StreamStreamMultiCallable[Any, Any]
else:
    _UnaryUnary = grpc.UnaryUnaryMultiCallable
    _StreamUnary = grpc.StreamUnaryMultiCallable
    _UnaryStream = grpc.UnaryStreamMultiCallable
    _StreamStream = grpc.StreamStreamMultiCallable


class _Counted:
    __slots__ = ("_counter", "_inner")

    def __init__(self, inner: Any, counter: _RpcCounter) -> None:
        self._inner = inner
        self._counter = counter

    def _blocking(self, call: Any, request: Any, args: Any, kwargs: Any) -> Any:
        counter = self._counter
        counter._start()
        try:
            result = call(request, *args, **kwargs)
        except grpc.RpcError as exc:
            counter._end(exc.code() if isinstance(exc, grpc.Call) else None)
            raise
        except BaseException:
            counter._end(None)
            raise
        counter._end(grpc.StatusCode.OK)
        return result

    def _async(self, call: Any, request: Any, args: Any, kwargs: Any) -> Any:
        counter = self._counter
        counter._start()
        try:
            future = call(request, *args, **kwargs)
        except BaseException:
            counter._end(None)
            raise
        future.add_done_callback(counter._done)  # at once if already done
        return future


class _CountedUnaryUnary(_Counted, _UnaryUnary):
    __slots__ = ()

    def __call__(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        return self._blocking(self._inner, request, args, kwargs)

    def with_call(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        return self._blocking(self._inner.with_call, request, args, kwargs)

    def future(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        return self._async(self._inner.future, request, args, kwargs)


class _CountedStreamUnary(_Counted, _StreamUnary):
    __slots__ = ()

    def __call__(self, request_iterator: Any, *args: Any, **kwargs: Any) -> Any:
        return self._blocking(self._inner, request_iterator, args, kwargs)

    def with_call(self, request_iterator: Any, *args: Any, **kwargs: Any) -> Any:
        return self._blocking(self._inner.with_call, request_iterator, args, kwargs)

    def future(self, request_iterator: Any, *args: Any, **kwargs: Any) -> Any:
        return self._async(self._inner.future, request_iterator, args, kwargs)


class _CountedUnaryStream(_Counted, _UnaryStream):
    __slots__ = ()

    def __call__(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        return self._async(self._inner, request, args, kwargs)


class _CountedStreamStream(_Counted, _StreamStream):
    __slots__ = ()

    def __call__(self, request_iterator: Any, *args: Any, **kwargs: Any) -> Any:
        return self._async(self._inner, request_iterator, args, kwargs)


class PooledChannel(grpc.Channel):
    """A pooled ``grpc.Channel``: use it like any channel; the pool owns its life.

    ``close()`` and ``with channel:`` do not close it (the pool retires and
    closes channels itself, after draining), so a caller cannot break the pool.
    """

    __slots__ = ("_counter", "_picks", "_raw", "_rpc", "_stubs", "channel_id", "slot", "target")

    def __init__(
        self,
        raw: grpc.Channel,
        rpc: grpc.Channel,
        counter: _RpcCounter | None,
        slot: int,
        target: str,
        channel_id: str,
    ) -> None:
        self._raw = raw
        self._rpc = rpc
        self._counter = counter
        self._picks = 0
        self._stubs: dict[Any, Any] = {}  # Pool.stub() cache: dies with the channel
        self.slot = slot
        self.target = target
        self.channel_id = channel_id

    # -- grpc.Channel --------------------------------------------------------
    def unary_unary(self, method: str, *args: Any, **kwargs: Any) -> Any:
        inner = self._rpc.unary_unary(method, *args, **kwargs)
        counter = self._counter
        return inner if counter is None else _CountedUnaryUnary(inner, counter)

    def unary_stream(self, method: str, *args: Any, **kwargs: Any) -> Any:
        inner = self._rpc.unary_stream(method, *args, **kwargs)
        counter = self._counter
        return inner if counter is None else _CountedUnaryStream(inner, counter)

    def stream_unary(self, method: str, *args: Any, **kwargs: Any) -> Any:
        inner = self._rpc.stream_unary(method, *args, **kwargs)
        counter = self._counter
        return inner if counter is None else _CountedStreamUnary(inner, counter)

    def stream_stream(self, method: str, *args: Any, **kwargs: Any) -> Any:
        inner = self._rpc.stream_stream(method, *args, **kwargs)
        counter = self._counter
        return inner if counter is None else _CountedStreamStream(inner, counter)

    def subscribe(
        self, callback: Callable[[grpc.ChannelConnectivity], None], try_to_connect: bool = False
    ) -> None:
        self._raw.subscribe(callback, try_to_connect=try_to_connect)

    def unsubscribe(self, callback: Callable[[grpc.ChannelConnectivity], None]) -> None:
        self._raw.unsubscribe(callback)

    def close(self) -> None:
        """Does nothing: the pool closes its channels (``Pool.close``)."""
        logger.debug("close() on pooled channel %s ignored: the pool owns it", self.channel_id)

    def __enter__(self) -> PooledChannel:
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None

    # -- pool side -----------------------------------------------------------
    @property
    def in_flight(self) -> int | None:
        """RPCs started and not finished on this channel (None when not counted)."""
        return self._counter.in_flight if self._counter is not None else None

    @property
    def rpcs_total(self) -> int | None:
        """RPCs ever started on this channel (None when not counted)."""
        return self._counter.total if self._counter is not None else None

    @property
    def load(self) -> int:
        """In-flight RPCs when counted, else how often it was picked."""
        counter = self._counter
        return counter.in_flight if counter is not None else self._picks

    def _close(self) -> None:
        # grpcio's close() clears subscriptions but not a pending try_to_connect;
        # its poller thread would then call into the closed channel and raise
        # ValueError on gRPC's thread. Let the poller end first.
        self._wait_for_poller(time.monotonic() + _POLLER_EXIT_TIMEOUT)
        self._raw.close()

    def _poller_running(self) -> bool:
        """Whether grpcio's connectivity poller thread of this channel is still alive."""
        return bool(getattr(getattr(self._raw, "_connectivity_state", None), "polling", False))

    def _wait_for_poller(self, deadline: float) -> bool:
        """Wait until grpcio's connectivity poller thread of this channel has ended.

        It ends within two 0.2 s ticks once nobody is subscribed. Also needed
        before fork: a thread inside gRPC at fork time can crash the child.
        """
        while self._poller_running():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True

    def __repr__(self) -> str:
        return f"<PooledChannel {self.channel_id} target={self.target!r} slot={self.slot}>"


def _keepalive_options(config: PoolConfig) -> list[tuple[str, int]]:
    if config.keepalive_time is None:
        return []
    timeout_ms = int(config.keepalive_timeout * 1000)
    return [
        ("grpc.keepalive_time_ms", int(config.keepalive_time * 1000)),
        ("grpc.keepalive_timeout_ms", timeout_ms),
        # Measured on grpcio 1.85: without this, a black-holed connection's
        # keepalive ping is only given up after ~60 s, whatever keepalive_timeout_ms says.
        ("grpc.http2.ping_timeout_ms", timeout_ms),
        ("grpc.keepalive_permit_without_calls", int(config.keepalive_without_calls)),
    ]


def build_channel(
    config: PoolConfig, credentials: grpc.ChannelCredentials | None, slot: int, pool_label: str
) -> PooledChannel:
    """A new channel for ``slot`` on its own TCP connection (local subchannel pool)."""
    channel_id = f"{pool_label}/{slot}/{next(_channel_ids)}"
    target = config.target_of(slot)
    options = [o for o in config.options if o[0] not in (LOCAL_SUBCHANNEL_POOL, CHANNEL_ID)]
    options += [(LOCAL_SUBCHANNEL_POOL, 1), (CHANNEL_ID, channel_id)]
    options += [o for o in _keepalive_options(config) if o[0] not in dict(config.options)]
    if credentials is None:
        raw = grpc.insecure_channel(target, options=options)
    else:
        raw = grpc.secure_channel(target, credentials, options=options)
    counter = _RpcCounter(config.eject_after_unavailable) if config.track_in_flight else None
    interceptors = tuple(config.interceptors)
    rpc = grpc.intercept_channel(raw, *interceptors) if interceptors else raw
    return PooledChannel(raw, rpc, counter, slot, target, channel_id)
