"""Listeners may call back into their pool: close(), remove_listener(), stats() and
the scaling methods work from inside a listener (no deadlock, no exception), and
every listener thread still ends. Real servers on loopback; every wait bounded."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

import grpc_pool
from grpc_pool._contract import events as _events
from grpc_pool.testing.echo import EchoServer

from .conftest import Recorder, wait_until

WAIT = 10.0


def listener_threads(pool: grpc_pool.Pool) -> list[threading.Thread]:
    prefix = f"grpc_pool-listener-{pool.name}-"
    return [t for t in threading.enumerate() if t.name.startswith(prefix) and t.is_alive()]


class OnFirst:
    """A listener that runs ``action(pool)`` once, on the first event named ``name``
    after ``arm(pool)``, and keeps what it returned or raised."""

    def __init__(self, name: str, action: Callable[[grpc_pool.Pool], Any]) -> None:
        self.name, self.action = name, action
        self.pool: grpc_pool.Pool | None = None
        self.armed = threading.Event()
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None
        self.calls = 0

    def arm(self, pool: grpc_pool.Pool) -> None:
        self.pool = pool
        self.armed.set()

    def __call__(self, event: grpc_pool.PoolEvent) -> None:
        self.calls += 1
        if event.name != self.name or self.done.is_set() or not self.armed.wait(WAIT):
            return
        assert self.pool is not None
        try:
            self.result = self.action(self.pool)
        except BaseException as error:
            self.error = error
        finally:
            self.done.set()


def test_close_from_inside_a_listener(make_pool: Any, server: EchoServer) -> None:
    """pool.close() in a listener returns without error, the pool is closed, the
    other listeners still get pool_closed, and every listener thread ends (the
    caller's own once its callback returns)."""
    closer = OnFirst("channel_connected", lambda pool: pool.close(grace=0))
    after = Recorder()
    pool = make_pool(server.target, size=2, listeners=[closer, after], name="selfclose")
    closer.arm(pool)
    assert closer.done.wait(WAIT)
    assert closer.error is None, repr(closer.error)
    assert pool.closed
    wait_until(lambda: not listener_threads(pool), WAIT, "listener threads ended")
    assert [e.name for e in after.events][-1] == "pool_closed"


def test_remove_listener_from_inside_itself(make_pool: Any, server: EchoServer) -> None:
    """A listener that removes itself gets no further event; its thread ends; the
    others go on."""
    quitter = OnFirst("channel_connected", lambda pool: pool.remove_listener(quitter))
    other = Recorder()
    pool = make_pool(server.target, size=1, listeners=[quitter, other], name="selfremove")
    quitter.arm(pool)
    assert quitter.done.wait(WAIT)
    assert quitter.error is None, repr(quitter.error)
    wait_until(lambda: len(listener_threads(pool)) == 1, WAIT, "the quitter's thread ended")
    calls = quitter.calls
    pool.scale_up(1)
    wait_until(lambda: len(other.named("channel_connected")) >= 2, WAIT, "the new slot")
    assert quitter.calls == calls


def test_remove_another_listener_from_inside_a_listener(make_pool: Any, server: EchoServer) -> None:
    """A listener removing another one joins that one's thread; no error, no thread left."""
    victim = Recorder()
    remover = OnFirst("channel_connected", lambda pool: pool.remove_listener(victim))
    pool = make_pool(server.target, size=1, listeners=[remover, victim], name="otherremove")
    remover.arm(pool)
    assert remover.done.wait(WAIT)
    assert remover.error is None, repr(remover.error)
    assert len(listener_threads(pool)) == 1


def test_stats_and_scaling_from_inside_a_listener(make_pool: Any, server: EchoServer) -> None:
    """stats(), scale_up(), resize() and scale_down() called from a listener answer
    (the writer never waits on listeners) with the sizes they set."""

    def calls(pool: grpc_pool.Pool) -> tuple[int, int, int, int]:
        before = len(pool.stats().slots)
        return before, pool.scale_up(1), pool.resize(4), pool.scale_down(1)

    scaler = OnFirst("channel_connected", calls)
    pool = make_pool(server.target, size=2, listeners=[scaler], name="selfscale")
    scaler.arm(pool)
    assert scaler.done.wait(WAIT)
    assert scaler.error is None, repr(scaler.error)
    assert scaler.result == (2, 3, 4, 3)
    assert pool.status().expected_size == 3


def test_close_from_inside_a_listener_with_its_queue_full(
    make_pool: Any, server: EchoServer
) -> None:
    """A listener that closes the pool while its own queue is full still ends (its
    thread cannot wait for room in its own queue)."""

    def fill_then_close(pool: grpc_pool.Pool) -> None:
        (delivery,) = [d for d in pool._events.deliveries if d.listener is closer]
        while True:  # fill its queue as a burst of events would
            try:
                delivery.queue.put_nowait(_events.PoolClosedEvent(pool="x", at=0.0, grace=0.0))
            except queue.Full:
                break
        pool.close(grace=0)

    closer = OnFirst("channel_connected", fill_then_close)
    pool = make_pool(server.target, size=1, listeners=[closer], name="fullclose")
    closer.arm(pool)
    assert closer.done.wait(WAIT)
    assert closer.error is None, repr(closer.error)
    wait_until(lambda: not listener_threads(pool), WAIT, "the listener thread ended")
