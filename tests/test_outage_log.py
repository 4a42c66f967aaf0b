"""get_channel(timeout=...) timeouts log one WARNING per outage, the rest at DEBUG,
and one INFO with their count once a channel is ready again."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

import grpc_pool
from grpc_pool.testing.echo import EchoServer

from .conftest import wait_until

READER = "grpc_pool._readers.reader"


def _timeouts(caplog: pytest.LogCaptureFixture, level: int) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.name == READER and r.levelno == level and "no ready channel" in r.getMessage()
    ]


def _ready_again(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == READER and "ready again" in r.getMessage()]


def test_one_warning_per_outage_then_debug_then_one_info_with_the_count(
    make_pool: Callable[..., grpc_pool.Pool],
    server: EchoServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Three timed-out get_channel(timeout=...) calls while the server is down: the
    first is logged at WARNING, the other two at DEBUG; when the server is back and a
    channel is ready, one INFO says 3 calls timed out. A second outage logs its own
    first WARNING again."""
    caplog.set_level(logging.DEBUG, logger="grpc_pool")
    server.stop()
    pool = make_pool(server.target, size=1)
    for _ in range(3):
        with pytest.raises(grpc_pool.NoChannelAvailable):
            pool.get_channel(timeout=0.05)
    assert len(_timeouts(caplog, logging.WARNING)) == 1
    assert len(_timeouts(caplog, logging.DEBUG)) == 2
    assert not _ready_again(caplog)

    server.start()  # the same port
    pool.wait_ready(timeout=10)
    wait_until(lambda: bool(_ready_again(caplog)), what="the ready-again INFO")
    (info,) = _ready_again(caplog)
    assert info.levelno == logging.INFO
    assert "3 get_channel(timeout=...) call(s) timed out" in info.getMessage()

    caplog.clear()
    server.stop()
    wait_until(lambda: not pool.status().current_size, what="the pool to lose its channel")
    with pytest.raises(grpc_pool.NoChannelAvailable):
        pool.get_channel(timeout=0.05)
    assert len(_timeouts(caplog, logging.WARNING)) == 1


def test_no_info_without_timed_out_calls(
    make_pool: Callable[..., grpc_pool.Pool],
    server: EchoServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A pool that becomes ready with no timed-out call in between logs no ready-again
    INFO (get_channel() without a timeout raises at once and is not counted)."""
    caplog.set_level(logging.DEBUG, logger="grpc_pool")
    pool = make_pool(server.target, size=1)
    pool.wait_ready(timeout=10)
    pool.get_channel()
    assert not _ready_again(caplog)
    assert not _timeouts(caplog, logging.WARNING)
