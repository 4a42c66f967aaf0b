"""Connectivity watching (``_workers/watch.py``): one watcher thread per pool and
no grpcio poller per channel; a server that leaves is seen without any RPC, on
both paths: grpcio's private ``check_connectivity_state`` (``PollWatch``) and the
fallback through ``subscribe()`` (forced by ``USE_PRIVATE_API``, or taken per
channel when that private method cannot be read)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

import grpc
import pytest

import grpc_pool
from grpc_pool._base.parking import Parking
from grpc_pool._channel.pooled import _connectivity_state
from grpc_pool._workers import sockets, watch
from grpc_pool.cli.bench.idle import os_threads
from grpc_pool.testing.echo import EchoServer

from .conftest import FAST, pool_threads, wait_until

SIZE = 4
# grpcio before 1.80 runs the fallback only (watch.POLL_SINCE): the poll path's tests skip.
needs_polling = pytest.mark.skipif(
    not watch.polling_supported(), reason=f"grpcio {grpc.__version__}: subscribe() fallback"
)
SETTLE = 1.0  # grpcio's channel_ready_future pollers end within two 0.2 s ticks


def polling(channels: Iterable[grpc.Channel]) -> list[grpc.Channel]:
    """The channels whose grpcio connectivity poller thread runs now."""
    return [c for c in channels if getattr(_connectivity_state(c), "polling", False)]


def pool_polling(pool: grpc_pool.Pool) -> list[grpc.Channel]:
    return polling(c._raw for c in pool._snapshot)


@pytest.fixture(params=["poll", "tick", "subscribe", "unreadable"])
def path(request: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """poll: PollWatch (sleeping on the sockets where it can); tick: PollWatch that
    never sleeps on them (USE_SOCKETS off); subscribe: USE_PRIVATE_API off;
    unreadable: PollWatch finds no readable check_connectivity_state and hands every
    channel to subscribe()."""
    if request.param != "subscribe" and not watch.polling_supported():
        pytest.skip(f"grpcio {grpc.__version__} < 1.80: the pool watches with subscribe()")
    if request.param == "tick":
        monkeypatch.setattr(watch, "USE_SOCKETS", False)
    elif request.param == "subscribe":
        monkeypatch.setattr(watch, "USE_PRIVATE_API", False)
    elif request.param == "unreadable":
        monkeypatch.setattr(watch, "checker", lambda raw: None)
    yield request.param


@needs_polling
def test_a_pool_of_n_adds_at_most_n_plus_4_threads(server: EchoServer) -> None:
    """With N raw channels READY on their own connections, a READY pool of N adds at
    most N + 4 OS threads (here: N workers, the writer, the reaper, the watcher)
    and runs no grpcio connectivity poller. Counted, not timed."""
    raws = []
    pool = None
    try:
        for i in range(SIZE):
            options = [("grpc.use_local_subchannel_pool", 1), ("test.channel", i)]
            raws.append(grpc.insecure_channel(server.target, options=options))
            grpc.channel_ready_future(raws[-1]).result(timeout=10)
        wait_until(lambda: not polling(raws), 10, "the ready futures' pollers to end")
        time.sleep(SETTLE)
        raw_threads = os_threads()
        pool = grpc_pool.Pool(server.target, size=SIZE, **FAST)
        pool.wait_ready(timeout=10, min_ready=SIZE)
        time.sleep(SETTLE)
        added = os_threads() - raw_threads
        names = sorted(t.name for t in pool_threads())
        assert not pool_polling(pool)
        assert len(names) == SIZE + 3, names
        assert added <= SIZE + 4, (added, names)
    finally:
        if pool is not None:
            pool.close()
        for raw in raws:
            raw.close()


@pytest.mark.parametrize("grace", [None, 0.5], ids=["abrupt", "graceful-goaway"])
def test_a_server_leaving_is_seen_without_any_rpc(
    make_pool: Any,
    server: EchoServer,
    path: str,
    grace: float | None,
    caplog: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No RPC at all: a server's stop (abrupt, or graceful with GOAWAY) takes every
    channel out ("down", get_channel raises), and its restart brings every slot back,
    on every watching path; grpcio pollers run only on the fallback paths. Where the
    watcher can sleep on the sockets (Linux), it is asleep with no sweep due for an
    hour when the server stops: only the connections' own GOAWAY or close wake it."""
    caplog.set_level(logging.WARNING, logger="grpc_pool._workers.watch")
    monkeypatch.setattr(sockets, "SWEEP", 3600.0)
    pool = make_pool(server.target, size=2)
    pool.wait_ready(timeout=10, min_ready=2)
    assert len(pool_polling(pool)) == (0 if path in ("poll", "tick") else 2)
    if path == "unreadable":
        assert "watching with grpcio's subscribe() pollers" in caplog.text
    watcher = pool._writer._crew.watch
    if path == "poll" and sockets.available():
        wait_until(lambda: watcher.socket_sleeps > 0, 10, "the watcher asleep on the sockets")
    elif path == "tick":
        time.sleep(SETTLE)
        assert watcher.socket_sleeps == 0
    server.stop(grace)
    wait_until(lambda: pool.status().state == "down", 10, "status down")
    with pytest.raises(grpc_pool.NoChannelAvailable):
        pool.get_channel()
    server.start()
    assert pool.wait_ready(timeout=15, min_ready=2).state == "healthy"
    assert all(s.state == "ready" for s in pool.stats().slots)


@needs_polling
def test_watcher_parks_and_ends(server: EchoServer) -> None:
    """A fork's park request reaches the watcher (Parkable): its thread waits
    outside gRPC until the unpark, then a state change is still delivered, and it
    ends when the pool closes."""
    pool = grpc_pool.Pool(server.target, size=1, **FAST)
    try:
        pool.wait_ready(timeout=10)
        watcher = pool._writer._crew.watch
        assert isinstance(watcher, watch.PollWatch)
        wait = pool._fork.park()  # what a fork asks of the pool: the watcher parks too
        assert wait is not None and wait(time.monotonic() + 5)
        assert watcher._parking.wanted and watcher.parked(time.monotonic())
        pool._fork.unpark()
        server.stop()
        wait_until(lambda: pool.status().state == "down", 10, "status down after unpark")
    finally:
        pool.close()
    assert not watcher.thread.is_alive()


def test_checker_reads_a_channel_and_not_a_closed_one(server: EchoServer) -> None:
    """``checker`` reads grpcio's state of a live channel (asking it to connect brings
    READY) and gives None for a closed one or an object without grpcio's internals."""
    channel = grpc.insecure_channel(server.target)
    try:
        check = watch.checker(channel)
        assert check is not None
        check(True)
        ready = grpc.ChannelConnectivity.READY
        wait_until(lambda: watch.STATES[check(False)] is ready, 10, "READY")
    finally:
        channel.close()
    assert watch.checker(channel) is None
    assert watch.checker(object()) is None


@pytest.mark.parametrize(
    ("version", "private_api", "expected"),
    [
        ("1.85.1", True, watch.PollWatch),
        ("1.80.0", True, watch.PollWatch),
        ("1.78.2", True, watch.SubscribeWatch),
        ("1.60.0", True, watch.SubscribeWatch),
        ("1.85.1", False, watch.SubscribeWatch),
    ],
)
def test_the_watcher_follows_the_grpcio_version(
    monkeypatch: pytest.MonkeyPatch, version: str, private_api: bool, expected: type
) -> None:
    """The version guard: PollWatch from grpcio 1.80 on (earlier ones connect only
    while a thread polls gRPC), subscribe() pollers before it or when switched off."""
    monkeypatch.setattr(grpc, "__version__", version)
    monkeypatch.setattr(watch, "USE_PRIVATE_API", private_api)
    assert type(watch.make_watch("versions")) is expected


class _LateWake:
    """A release event whose waiter wakes only when the test says so."""

    def __init__(self) -> None:
        self.gate = threading.Event()

    def set(self) -> None:
        pass

    def clear(self) -> None:
        pass

    def wait(self, timeout: float) -> bool:
        return self.gate.wait(timeout)


def test_a_late_wake_keeps_the_next_forks_park_request() -> None:
    """A parked thread that wakes from one fork's release only after the next fork's
    request still sees that request (``wanted``), so the reaper and the watcher park
    for it instead of making that fork wait PAUSE_TIMEOUT."""
    parking = Parking()
    parking.request()
    late = _LateWake()
    parking._release = late  # type: ignore[assignment]
    thread = threading.Thread(target=parking.park_here, name="test-parking")
    thread.start()
    try:
        assert parking.wait(time.monotonic() + 5, thread)
        parking.release()
        parking.request()  # the next fork, before the parked thread ran again
    finally:
        late.gate.set()
        thread.join(5)
    assert not thread.is_alive()
    assert parking.wanted


@needs_polling
def test_a_channel_whose_state_cannot_be_read_is_replaced(
    make_pool: Any, server: EchoServer, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    """When reading one channel's state starts failing (an unexpected error from
    grpcio), the watcher reports it SHUTDOWN once (logged once), its worker replaces
    it with a new channel that serves, and the watcher thread goes on."""
    broken: set[object] = set()
    real = watch.checker

    def failing(raw: object) -> Any:
        read = real(raw)

        def check(try_to_connect: bool) -> int:
            if raw in broken:
                raise RuntimeError("injected")
            return read(try_to_connect)  # type: ignore[misc]

        return check if read is not None else None

    monkeypatch.setattr(watch, "checker", failing)
    caplog.set_level(logging.ERROR, logger="grpc_pool._workers.watch")
    pool = make_pool(server.target, size=1)
    pool.wait_ready(timeout=10)
    first = pool.get_channel()
    broken.add(first._raw)
    wait_until(
        lambda: pool.stats().slots[0].channel_id not in (None, first.channel_id),
        10,
        "a new channel in the slot",
    )
    assert pool.wait_ready(timeout=10).state == "healthy"
    assert pool.get_channel() is not first
    assert caplog.text.count("reading a channel's state failed") == 1
    assert pool._writer._crew.watch.thread.is_alive()
