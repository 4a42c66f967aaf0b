"""Events: parity with the reference's telemetry, delivered off the hot path;
a raising or blocking listener never stalls the writer or other listeners."""

from __future__ import annotations

import dataclasses
import logging
import threading
from typing import Any

import pytest

import grpc_pool
from grpc_pool._contract import events as _events
from grpc_pool.testing.echo import ECHO, EchoServer

from .conftest import Recorder, wait_until
from .test_hot_path import BUDGET, profile_calls


def test_lifecycle_events_across_a_restart(make_pool: Any, server: EchoServer) -> None:
    """started -> connected per slot -> disconnected + reconnect_scheduled ->
    connection_failed while down -> connected (reconnect) -> closed."""
    rec = Recorder()
    pool = make_pool(server.target, size=2, listeners=[rec], name="ev")
    pool.wait_ready(timeout=10, min_ready=2)
    wait_until(lambda: len(rec.named("channel_connected")) == 2, 5, "2 connected events")
    started = rec.named("pool_started")
    assert [(e.size, e.target, e.pool) for e in started] == [(2, server.target, "ev")]
    first = rec.named("channel_connected")
    assert {e.slot for e in first} == {0, 1}
    assert all(e.duration >= 0 and not e.reconnect for e in first)

    server.stop()
    wait_until(lambda: len(rec.named("channel_disconnected")) == 2, 10, "disconnects")
    wait_until(lambda: rec.named("connection_failed"), 10, "a failed attempt while down")
    server.start()
    pool.wait_ready(timeout=10, min_ready=2)
    wait_until(lambda: len(rec.named("channel_connected")) >= 4, 5, "reconnect events")
    gone = rec.named("channel_disconnected")
    assert all(e.connected_for > 0 and e.reason for e in gone)
    scheduled = rec.named("reconnect_scheduled")
    assert scheduled and all(e.delay >= 0 and e.attempt >= 1 for e in scheduled)
    failed = rec.named("connection_failed")
    assert all(e.error and e.failures >= 1 for e in failed)
    assert any(e.reconnect for e in rec.named("channel_connected"))
    pool.close()
    assert [e.name for e in rec.events][-1] == "pool_closed"


def test_every_event_is_a_frozen_dataclass_with_name_pool_and_time(
    make_pool: Any, server: EchoServer
) -> None:
    rec = Recorder()
    pool = make_pool(server.target, size=1, listeners=[rec], status_interval=0.05)
    pool.wait_ready(timeout=10)
    pool.scale_up(1)
    wait_until(lambda: rec.named("status"), 5, "a status event")
    pool.close()
    assert len({e.name for e in rec.events}) >= 5
    for event in rec.events:
        assert dataclasses.is_dataclass(event) and isinstance(event, grpc_pool.PoolEvent)
        assert event.pool == pool.name and event.at > 0 and isinstance(event.name, str)
        with pytest.raises(dataclasses.FrozenInstanceError):
            event.at = 0  # type: ignore[misc]


def test_scale_events_and_status_report_sizes_as_they_are_now(
    make_pool: Any, server: EchoServer
) -> None:
    """Scaling emits scale_up/scale_down/resize; later status events show the new size
    (the reference kept reporting the initial size)."""
    rec = Recorder()
    pool = make_pool(server.target, size=2, listeners=[rec], status_interval=0.05)
    pool.wait_ready(timeout=10, min_ready=2)
    pool.scale_up(2)
    pool.scale_down(1)
    pool.resize(5)
    wait_until(lambda: rec.named("resize"), 5, "resize event")
    (up,), (down,), (resize,) = rec.named("scale_up"), rec.named("scale_down"), rec.named("resize")
    assert (up.requested, up.done, up.new_size) == (2, 2, 4)
    assert (down.requested, down.done, down.new_size) == (1, -1, 3)
    assert (resize.requested, resize.done, resize.new_size) == (5, 2, 5)
    assert all(e.duration >= 0 for e in (up, down, resize))
    seen = len(rec.events)
    wait_until(lambda: [e for e in rec.events[seen:] if e.name == "status"], 5, "status")
    status = [e for e in rec.events[seen:] if e.name == "status"][-1]
    assert status.expected_size == 5


def test_status_events_off_when_interval_is_zero(make_pool: Any, server: EchoServer) -> None:
    rec = Recorder()
    pool = make_pool(server.target, size=1, listeners=[rec], status_interval=0)
    pool.wait_ready(timeout=10)
    pool.scale_up(1)  # a writer round-trip after which a due status would have been sent
    pool.close()
    assert rec.named("status") == []


def test_the_status_timer_wakes_the_writer_only_while_someone_listens(
    make_pool: Any, server: EchoServer
) -> None:
    """Without listeners the status event has no one to reach: its timer is not among
    the writer's deadlines (an idle pool's writer sleeps through it). A listener
    added later puts it back and gets status events (the add wakes the writer)."""
    pool = make_pool(server.target, size=1, status_interval=0.05)
    pool.wait_ready(timeout=10)
    timers = pool._writer._timers
    alone = pool._call(timers.deadlines)
    rec = Recorder()
    pool.add_listener(rec)
    assert len(pool._call(timers.deadlines)) == len(alone) + 1
    wait_until(lambda: len(rec.named("status")) >= 2, 5, "status events")


@pytest.mark.parametrize(("rate", "calls", "expected"), [(0, 50, 0), (1, 50, 50), (10, 50, 5)])
def test_get_channel_sampling(
    make_pool: Any, server: EchoServer, rate: int, calls: int, expected: int
) -> None:
    """telemetry_sample_rate: 0 never, 1 every call, N one call in N."""
    rec = Recorder()
    pool = make_pool(server.target, size=2, listeners=[rec], telemetry_sample_rate=rate)
    pool.wait_ready(timeout=10, min_ready=2)
    picked = [pool.get_channel() for _ in range(calls)]
    pool.close()
    sampled = rec.named("get_channel")
    assert len(sampled) == expected
    assert all(e.available == 2 for e in sampled)
    if rate == 1:
        assert [e.slot for e in sampled] == [c.slot for c in picked]


def test_no_listener_means_no_extra_work_in_get_channel(make_pool: Any, server: EchoServer) -> None:
    """Sampling costs calls only while a listener is registered; removing it restores the budget."""
    pool = make_pool(server.target, size=2, telemetry_sample_rate=1)
    pool.wait_ready(timeout=10, min_ready=2)
    budget = BUDGET["round_robin"]
    assert profile_calls(pool.get_channel)["call"] <= budget["call"]
    rec = Recorder()
    pool.add_listener(rec)
    assert profile_calls(pool.get_channel)["call"] > budget["call"]  # the sampler runs
    pool.remove_listener(rec)
    assert profile_calls(pool.get_channel)["call"] <= budget["call"]
    assert len(rec.named("get_channel")) == 10


def test_raising_listener_is_logged_and_others_still_get_everything(
    make_pool: Any, server: EchoServer, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(event: _events.PoolEvent) -> None:
        raise RuntimeError("injected listener fault")

    rec = Recorder()
    pool = make_pool(server.target, size=2, listeners=[broken, rec])
    pool.wait_ready(timeout=10, min_ready=2)
    assert pool.scale_up(1) == 3  # the writer keeps serving
    pool.close()
    assert "injected listener fault" in caplog.text
    assert {"pool_started", "channel_connected", "scale_up", "pool_closed"} <= {
        e.name for e in rec.events
    }


def test_blocking_listener_does_not_stall_writer_or_others(
    make_pool: Any,
    server: EchoServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A listener stuck forever only loses its own events (counted, logged); the
    other listener gets every event."""
    release = threading.Event()

    def stuck(event: _events.PoolEvent) -> None:
        release.wait(30)

    rec = Recorder()
    pool = make_pool(server.target, size=2, telemetry_sample_rate=1)
    try:
        monkeypatch.setattr(_events, "QUEUE_SIZE", 3)  # only the stuck listener's queue
        pool.add_listener(stuck)
        monkeypatch.undo()
        pool.add_listener(rec)
        pool.wait_ready(timeout=10, min_ready=2)
        for _ in range(20):
            pool.get_channel().unary_unary(ECHO)(b"x", timeout=5)
        assert pool.resize(3) == 3
        wait_until(lambda: rec.named("resize"), 5, "the other listener's events")
        assert len(rec.named("get_channel")) == 20
        assert pool.stats().events_dropped > 0
        assert "not keeping up" in caplog.text
    finally:
        release.set()  # whatever failed, the stuck listener's thread must end


def test_add_and_remove_listener(make_pool: Any, server: EchoServer) -> None:
    rec = Recorder()
    pool = make_pool(server.target, size=1)
    pool.add_listener(rec)
    pool.wait_ready(timeout=10)
    pool.remove_listener(rec)
    count = len(rec.events)
    pool.scale_up(1)
    assert len(rec.events) == count
    with pytest.raises(grpc_pool.InvalidConfig, match="listener"):
        pool.add_listener("not callable")  # type: ignore[arg-type]


def test_connection_failure_logging(
    make_pool: Any, dead_target: str, caplog: pytest.LogCaptureFixture
) -> None:
    """First failure in a row at WARNING, repeats at DEBUG; suppressed: DEBUG only;
    an exhausted wait at WARNING."""
    caplog.set_level(logging.DEBUG, logger="grpc_pool")
    pool = make_pool(dead_target, size=1, name="loud")
    wait_until(lambda: pool.stats().slots[0].failures >= 3, 10, "3 failures")
    loud = [r for r in caplog.records if "cannot connect" in r.getMessage()]
    assert loud[0].levelno == logging.WARNING
    assert all(r.levelno == logging.DEBUG for r in loud[1:])
    caplog.clear()
    quiet = make_pool(dead_target, size=1, name="quiet", suppress_connection_errors=True)
    wait_until(lambda: quiet.stats().slots[0].failures >= 2, 10, "2 failures")
    assert not [
        r for r in caplog.records if r.levelno >= logging.WARNING and "quiet" in r.getMessage()
    ]
    with pytest.raises(grpc_pool.PoolTimeout):
        quiet.wait_ready(timeout=0.1)
    assert [r for r in caplog.records if r.levelno == logging.WARNING and "quiet" in r.getMessage()]


def test_every_disconnect_is_followed_by_reconnect_scheduled(
    make_pool: Any, server: EchoServer
) -> None:
    """A server restarted on the same port: the channels go IDLE and gRPC reconnects
    them by itself. Each channel_disconnected is followed, for its slot, by a
    reconnect_scheduled (delay 0 on that path), so counting attempts sees them all."""
    rec = Recorder()
    pool = make_pool(server.target, size=2, listeners=[rec])
    pool.wait_ready(timeout=10, min_ready=2)
    for restarts in range(1, 6):  # until one reconnect took gRPC's own IDLE -> READY path
        server.restart()
        wait_until(lambda n=restarts: pool.stats().connects >= 2 * (n + 1), 10, "reconnected")
        pool.wait_ready(timeout=10, min_ready=2)
        if any(e.reason.startswith("connection closed") for e in rec.named("channel_disconnected")):
            break
    pool.close()  # every event delivered
    by_slot: dict[int, list[str]] = {}
    for event in rec.events:
        if event.name in ("channel_disconnected", "reconnect_scheduled"):
            by_slot.setdefault(event.slot, []).append(event.name)
    idle = [
        e for e in rec.named("channel_disconnected") if e.reason.startswith("connection closed")
    ]
    assert idle, "no reconnect through IDLE happened in 5 restarts"
    for slot, names in by_slot.items():
        for i, name in enumerate(names):
            if name == "channel_disconnected":
                assert names[i + 1 : i + 2] == ["reconnect_scheduled"], (slot, names)
    idle_slots = {e.slot for e in idle}
    assert any(e.delay == 0.0 and e.slot in idle_slots for e in rec.named("reconnect_scheduled"))
