"""Values that pass validation must not break the pool: every duration, size and
channel option is bounded by what Python's waits, gRPC's int32 milliseconds and
grpcio accept; a failed start or resize rolls back; the writer survives its own wait."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest

import grpc_pool
from grpc_pool import PoolConfig
from grpc_pool._config.validate import MAX_SECONDS, MAX_SIZE
from grpc_pool._contract.commands import Wake
from grpc_pool._workers.watch import polling_supported
from grpc_pool.testing.echo import ECHO, EchoServer

from .conftest import FAST, Recorder, pool_threads, wait_until

TARGET = "127.0.0.1:1"
DURATIONS = [
    "connect_timeout",
    "backoff_initial",
    "backoff_max",
    "retire_grace",
    "status_interval",
    "keepalive_time",
    "keepalive_timeout",
    "health_check_interval",
    "health_check_timeout",
    "max_connection_age",
    "autoscale_interval",
]


def config(**options: Any) -> PoolConfig:
    return PoolConfig(target=TARGET, insecure=True, **options)


# -- durations ---------------------------------------------------------------------------


@pytest.mark.parametrize("field", DURATIONS)
def test_every_duration_is_capped(field: str) -> None:
    """Each duration field takes MAX_SECONDS (2,147,483 s, what gRPC's int32 milliseconds
    hold) and refuses anything above, NaN, infinities and negatives, naming the field,
    the value and the range."""
    extra = {"backoff_max": MAX_SECONDS} if field == "backoff_initial" else {}
    assert getattr(config(**{field: MAX_SECONDS}, **extra), field) == MAX_SECONDS
    assert MAX_SECONDS * 1000 <= 2**31 - 1 and MAX_SECONDS <= threading.TIMEOUT_MAX
    for bad in (MAX_SECONDS + 1, 1e10, math.inf, -math.inf, math.nan, -1.0, True, "5"):
        with pytest.raises(grpc_pool.InvalidConfig) as raised:
            config(**{field: bad})
        message = str(raised.value)
        assert message.startswith(f"{field}={bad!r} is not allowed"), message
        if not isinstance(bad, (bool, str)) and math.isfinite(bad) and bad >= 0:
            assert "<= 2147483 (seconds)" in message


def test_method_durations_are_capped(make_pool: Any, server: EchoServer) -> None:
    """get_channel(timeout), wait_ready(timeout) and close(grace) refuse values above
    MAX_SECONDS (which raised OverflowError from the waits before) with InvalidConfig,
    and work at the maximum: no OverflowError, close returns with nothing in flight."""
    pool = make_pool(server.target, size=2)
    for call, name in (
        (lambda v: pool.get_channel(timeout=v), "timeout"),
        (lambda v: pool.wait_ready(timeout=v), "timeout"),
        (lambda v: pool.close(grace=v), "grace"),
    ):
        for bad in (1e10, MAX_SECONDS + 0.5, math.inf, math.nan, -0.1):
            with pytest.raises(grpc_pool.InvalidConfig, match=rf"^{name}="):
                call(bad)
    assert not pool.closed
    pool.wait_ready(timeout=MAX_SECONDS, min_ready=2)
    assert pool.get_channel(timeout=MAX_SECONDS).unary_unary(ECHO)(b"x", timeout=5) == b"x"
    pool.close(grace=MAX_SECONDS)  # nothing in flight: drains at once
    assert not [t for t in pool_threads() if pool.name in t.name]


def test_pool_with_every_duration_at_the_maximum_connects(server: EchoServer) -> None:
    """keepalive (int32 ms in gRPC), health check timeout (a gRPC deadline), connect
    timeout, backoff and max age at MAX_SECONDS: the pool connects and serves, where
    1e10 made every connect fail."""
    durations = {f: MAX_SECONDS for f in DURATIONS if f != "health_check_interval"}
    with grpc_pool.Pool(
        server.target, insecure=True, health_check_interval=1.0, **durations
    ) as pool:
        pool.wait_ready(timeout=10, min_ready=5)
        assert pool.get_channel().unary_unary(ECHO)(b"k", timeout=5) == b"k"
        assert all(slot.health == "SERVING" for slot in pool.stats().slots)
        pool.close(grace=0)
    assert not pool_threads()


# -- the writer --------------------------------------------------------------------------


def test_writer_at_maximum_intervals_scales_and_closes(server: EchoServer) -> None:
    """status_interval, autoscale_interval and retire_grace at the maximum (near 1e10
    they killed the writer): the pool gets ready, scales up and down, and closes
    leaving no thread."""
    with grpc_pool.Pool(
        server.target,
        **{
            **FAST,
            "size": 2,
            "status_interval": MAX_SECONDS,
            "autoscale": True,
            "autoscale_interval": MAX_SECONDS,
            "retire_grace": MAX_SECONDS,
            "max_size": 6,
        },
    ) as pool:
        pool.wait_ready(timeout=10, min_ready=2)
        assert pool.scale_up(3) == 5
        pool.wait_ready(timeout=10, min_ready=5)
        assert pool.scale_down(2) == 3
        assert pool.resize(4) == 4
        assert pool._writer.thread.is_alive()
        pool.close(grace=0)
    assert not pool_threads()


def test_writer_survives_its_own_wait(make_pool: Any, server: EchoServer) -> None:
    """A wait time beyond threading.TIMEOUT_MAX and an exception while computing the
    wait do not end the writer: it logs, goes on, and still resizes and closes."""
    pool = make_pool(server.target, size=1)
    pool.wait_ready(timeout=10)
    writer = pool._writer
    original = writer._next_timeout
    calls: list[int] = []

    def next_timeout() -> float | None:
        calls.append(1)
        if len(calls) == 1:
            return 1e12  # OverflowError in queue.get unless clamped
        if len(calls) == 2:
            raise RuntimeError("injected failure in the writer's wait")
        return original()  # type: ignore[no-any-return]

    writer._next_timeout = next_timeout
    for turns in (1, 3, 4):  # each wakes the writer for one more turn of its loop
        writer.queue.put(Wake())  # one at a time: the writer takes what is queued as one batch
        wait_until(lambda n=turns: len(calls) >= n, what="the writer to go round its loop")
    assert writer.thread.is_alive()
    assert pool.resize(2) == 2
    pool.wait_ready(timeout=10, min_ready=2)
    pool.close(grace=0)
    writer.thread.join(10)
    assert not writer.thread.is_alive()


# -- sizes -------------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["size", "min_size", "max_size", "max_resize_delta"])
def test_sizes_are_capped(field: str) -> None:
    """size, min_size, max_size and max_resize_delta stop at 1,024 slots (each one costs
    two OS threads, a file descriptor and ~82 KB)."""
    # min_size <= size <= max_size: raise the others with it.
    at_max = {"size": ["size", "max_size"], "min_size": ["min_size", "size", "max_size"]}
    assert getattr(config(**dict.fromkeys(at_max.get(field, [field]), MAX_SIZE)), field) == MAX_SIZE
    for bad in (MAX_SIZE + 1, 10**6, 2**64):
        with pytest.raises(grpc_pool.InvalidConfig, match=rf"^{field}={bad} .*1\.\.1024"):
            config(**{field: bad})


def test_scaling_past_the_cap_is_refused(make_pool: Any, server: EchoServer) -> None:
    """resize(1025), scale_up past 1,024 slots in total and scale_down(10**6) raise
    InvalidConfig and change nothing; no thread is started for them."""
    pool = make_pool(server.target, size=2)
    pool.wait_ready(timeout=10, min_ready=2)
    threads = set(threading.enumerate())
    with pytest.raises(grpc_pool.InvalidConfig, match=r"^size=1025 .*1\.\.1024"):
        pool.resize(MAX_SIZE + 1)
    with pytest.raises(grpc_pool.InvalidConfig, match=r"n=1023 .*scale_up would make 1025"):
        pool.scale_up(MAX_SIZE - 1)
    with pytest.raises(grpc_pool.InvalidConfig, match=r"^n=1000000 "):
        pool.scale_down(10**6)
    assert pool.status().expected_size == 2
    assert set(threading.enumerate()) <= threads


# -- channel options ---------------------------------------------------------------------

GOOD_OPTIONS: list[tuple[Any, Any]] = [
    ("grpc.max_receive_message_length", 2**31 - 1),
    (b"grpc.max_receive_message_length", 1024),
    ("grpc.primary_user_agent", "grpc_pool-test"),
    ("grpc.primary_user_agent", b"grpc_pool-test"),
    ("grpc.enable_retries", False),  # a bool is an int to grpcio: 0
    ("grpc.x_min", -(2**31)),
]
BAD_OPTIONS: list[tuple[Any, Any]] = [
    ("grpc.x", None),
    ("grpc.x", object()),
    ("grpc.x", 2**40),
    ("grpc.x", 2**31),
    ("grpc.x", -(2**31) - 1),
    ("grpc.x", bytearray(b"x")),
    (1, 1),
]
# grpcio takes these without complaint but not as meant: refused too.
MISREAD_OPTIONS: list[tuple[Any, Any]] = [
    ("grpc.x", 1.5),  # an object with __int__ becomes a raw pointer argument
    (None, 1),
    ("", 1),
    ("grpc.x\0y", 1),  # read as a C string: cut at the NUL
    ("grpc.x", "a\0b"),
]


def _grpcio_takes(option: tuple[Any, Any]) -> bool:
    try:
        channel = grpc.insecure_channel("127.0.0.1:1", options=[option])
    except (TypeError, OverflowError):
        return False
    channel.close()
    return True


@pytest.mark.parametrize("option", GOOD_OPTIONS, ids=repr)
def test_options_grpcio_takes_are_accepted(option: tuple[Any, Any]) -> None:
    """Every option value kind grpcio 1.85 takes (int within int32, bool, str, bytes;
    str or bytes keys, the latter refused before: issue 10) is accepted."""
    assert _grpcio_takes(option)
    assert config(options=[option]).options == (option,)


@pytest.mark.parametrize("option", BAD_OPTIONS + MISREAD_OPTIONS, ids=repr)
def test_options_grpcio_refuses_or_misreads_are_refused(option: tuple[Any, Any]) -> None:
    """An option grpcio fails on at every connect (None, object(), beyond int32), or
    misreads (a float, an empty or None key, a NUL), is InvalidConfig naming options,
    the key and the allowed kinds."""
    if option in BAD_OPTIONS:
        assert not _grpcio_takes(option)
    with pytest.raises(grpc_pool.InvalidConfig) as raised:
        config(options=[option])
    message = str(raised.value)
    assert message.startswith("options "), message
    assert repr(option[0]) in message
    assert "str or bytes" in message


def test_bytes_key_option_reaches_grpc(make_pool: Any, server: EchoServer) -> None:
    """An option with a bytes key takes effect: a receive limit of 16 bytes set with a
    bytes key fails a 64-byte response with RESOURCE_EXHAUSTED."""
    pool = make_pool(server.target, size=1, options=[(b"grpc.max_receive_message_length", 16)])
    pool.wait_ready(timeout=10)
    with pytest.raises(grpc.RpcError) as raised:
        pool.get_channel().unary_unary(ECHO)(b"x" * 64, timeout=5)
    assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


# -- a failed start or resize rolls back --------------------------------------------------


@pytest.fixture
def failing_start(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str, int], None]]:
    """fail(prefix, k): Thread.start raises RuntimeError for threads named ``prefix``...
    after k of them started (as CPython does when it cannot make a thread)."""
    original = threading.Thread.start
    rule: dict[str, Any] = {}

    def start(self: threading.Thread) -> None:
        prefix = rule.get("prefix")
        if prefix is not None and self.name.startswith(prefix):
            if rule["left"] == 0:
                raise RuntimeError("can't start new thread (injected)")
            rule["left"] -= 1
        original(self)

    def fail(prefix: str, k: int) -> None:
        rule.update(prefix=prefix, left=k)

    monkeypatch.setattr(threading.Thread, "start", start)
    yield fail
    rule.clear()


@pytest.mark.parametrize("k", [0, 3])
def test_failed_worker_start_rolls_back(
    failing_start: Callable[[str, int], None], server: EchoServer, k: int
) -> None:
    """The (k+1)-th worker thread cannot start: Pool() raises that error, and the k
    workers already started and the listener thread are stopped and joined; the
    channels they opened are closed; no thread of the pool remains."""
    failing_start("grpc_pool-worker-", k)
    with pytest.raises(RuntimeError, match="injected"):
        grpc_pool.Pool(server.target, size=5, listeners=[Recorder()], **FAST)
    assert not pool_threads()


def test_failed_writer_start_rolls_back(
    failing_start: Callable[[str, int], None], server: EchoServer
) -> None:
    """The writer thread cannot start after its 3 workers did: Pool() raises, and the
    workers are stopped and joined."""
    failing_start("grpc_pool-writer-", 0)
    with pytest.raises(RuntimeError, match="injected"):
        grpc_pool.Pool(server.target, size=3, **FAST)
    assert not pool_threads()


def test_failed_resize_rolls_back(
    failing_start: Callable[[str, int], None], make_pool: Any, server: EchoServer
) -> None:
    """resize(5) from 2 where the 2nd new worker cannot start: the caller gets the
    error, the new slot that started is stopped, the pool keeps its 2 slots and serves;
    a later resize works and close leaves no thread."""
    pool = make_pool(server.target, size=2)
    pool.wait_ready(timeout=10, min_ready=2)
    failing_start("grpc_pool-worker-", 1)
    with pytest.raises(RuntimeError, match="injected"):
        pool.resize(5)
    assert pool.status().expected_size == 2
    assert [slot.slot for slot in pool.stats().slots] == [0, 1]
    # The writer, the reaper, the two workers (and the watcher where the pool polls).
    own = 4 + polling_supported()
    wait_until(lambda: len(pool_threads()) == own, what="the stopped slot's thread to end")
    assert pool.get_channel().unary_unary(ECHO)(b"r", timeout=5) == b"r"
    failing_start("none", 0)
    assert pool.resize(3) == 3
    pool.wait_ready(timeout=10, min_ready=3)
    pool.close(grace=0)
    assert not pool_threads()
