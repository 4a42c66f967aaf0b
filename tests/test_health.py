"""Health checks: one protobuf implementation of grpc.health.v1 Health/Check (the
workers and ``check`` share it), interop with grpcio-health-checking's servicer, and
recovery without churn: NOT_SERVING keeps the connection, only a check without an
answer reconnects. Real servers on loopback; no timing is asserted."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

import grpc_pool
from grpc_pool._workers import health as _health

from .conftest import Recorder, wait_until

INTERVAL = 0.2
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVING = health_pb2.HealthCheckResponse.SERVING


class PeerHealth(health.HealthServicer):
    """grpcio-health-checking's servicer that also records each caller's peer
    (ip:port): one per TCP connection the server accepted and heard from."""

    def __init__(self) -> None:
        super().__init__()
        self.peers: set[str] = set()
        self.checks = 0
        self._lock = threading.Lock()

    def Check(self, request: Any, context: grpc.ServicerContext) -> Any:
        with self._lock:
            self.peers.add(context.peer())
            self.checks += 1
        return super().Check(request, context)

    def serve(self, serving: bool) -> None:
        self.set("", SERVING if serving else NOT_SERVING)


class HealthServer:
    """A loopback grpc server with only the Health service (or no service at all)."""

    def __init__(self, with_health: bool = True) -> None:
        self.health = PeerHealth()
        self._executor = futures.ThreadPoolExecutor(8, thread_name_prefix="health-server")
        self._server = grpc.server(self._executor)
        if with_health:
            health_pb2_grpc.add_HealthServicer_to_server(self.health, self._server)
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        self.target = f"127.0.0.1:{self.port}"
        self._server.start()

    def stop(self) -> None:
        self._server.stop(None).wait(10)
        self._executor.shutdown(wait=True)


@pytest.fixture
def health_server() -> Iterator[HealthServer]:
    server = HealthServer()
    server.health.serve(True)
    yield server
    server.stop()


def checks_of(rec: Recorder, status: str) -> dict[int, int]:
    counts: dict[int, int] = {}
    for event in rec.named("health_check"):
        if event.status == status:
            counts[event.slot] = counts.get(event.slot, 0) + 1
    return counts


# -- the messages --------------------------------------------------------------------
@pytest.mark.parametrize("service", ["", "a", "grpc_pool.Echo", "x" * 300, "säkerhet"])
def test_request_bytes_match_grpcio_health_checking(service: str) -> None:
    """Our HealthCheckRequest encodes byte-for-byte as grpcio-health-checking's."""
    ours = _health.HealthCheckRequest(service=service).SerializeToString()
    assert ours == health_pb2.HealthCheckRequest(service=service).SerializeToString()


@pytest.mark.parametrize("status", [0, 1, 2, 3])
def test_response_parsing_matches_grpcio_health_checking(status: int) -> None:
    """Their HealthCheckResponse parses to the same status number with our class."""
    data = health_pb2.HealthCheckResponse(status=status).SerializeToString()
    assert _health.HealthCheckResponse.FromString(data).status == status


@pytest.mark.parametrize("first", ["grpc_pool._workers.health", "grpc_health.v1.health_pb2"])
def test_both_health_modules_import_in_either_order(first: str) -> None:
    """Our descriptor lives in a private pool: importing grpcio-health-checking's
    generated module before or after ours raises no duplicate-registration error."""
    second = (
        "grpc_health.v1.health_pb2"
        if first == "grpc_pool._workers.health"
        else "grpc_pool._workers.health"
    )
    code = f"import {first}, {second}; print('ok')"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


def test_check_reports_status_and_whether_the_server_answered(
    health_server: HealthServer,
) -> None:
    """``check()``: the status for the server and a named service, an unknown service
    is the server's NOT_FOUND (answered), a refused connection is not answered."""
    health_server.health.set("svc", NOT_SERVING)
    with grpc.insecure_channel(health_server.target) as channel:
        assert _health.check(channel, "", 5) == _health.HealthStatus("SERVING", True)
        assert _health.check(channel, "svc", 5).status == "NOT_SERVING"
        unknown = _health.check(channel, "nope", 5)
        assert (unknown.status, unknown.answered) == ("NOT_FOUND", True)
    health_server.stop()
    with grpc.insecure_channel(health_server.target) as channel:
        gone = _health.check(channel, "", 5)
    assert (gone.status, gone.answered) == ("UNAVAILABLE", False)


def test_health_checks_need_no_grpcio_health_checking(health_server: HealthServer) -> None:
    """With grpc_health unimportable a pool health-checks (our messages) against
    a server running grpcio-health-checking's servicer."""
    code = """
import sys
sys.modules["grpc_health"] = None  # as if grpcio-health-checking were not installed
import grpc_pool
with grpc_pool.Pool(sys.argv[1], size=2, insecure=True, health_check_interval=0.2) as pool:
    pool.wait_ready(timeout=20, min_ready=2)
    print(sorted(s.health for s in pool.stats().slots))
"""
    result = subprocess.run(
        [sys.executable, "-c", code, health_server.target],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "GRPC_VERBOSITY": "ERROR"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['SERVING', 'SERVING']"


# -- recovery without churn ----------------------------------------------------------
def test_not_serving_keeps_the_connections_and_serving_brings_them_back(
    make_pool: Any, health_server: HealthServer
) -> None:
    """NOT_SERVING takes every slot out of rotation but keeps its connection and
    checks again on it; SERVING puts the same channels back. The server sees the
    pool's 4 connections and no more; no reconnect, no backoff, no failure."""
    rec = Recorder()
    pool = make_pool(
        health_server.target,
        size=4,
        health_check_interval=INTERVAL,
        health_check_timeout=2.0,
        listeners=[rec],
    )
    pool.wait_ready(timeout=10, min_ready=4)
    before = {c.channel_id for c in pool._snapshot}
    health_server.health.serve(False)
    wait_until(lambda: pool.status().current_size == 0, 10, "all out of rotation")
    assert {s.state for s in pool.stats().slots} == {"unhealthy"}
    with pytest.raises(grpc_pool.NoChannelAvailable, match="NOT_SERVING"):
        pool.get_channel()
    # Long enough for the old behaviour (reconnect per unhealthy check) to show.
    wait_until(
        lambda: (
            len(checks_of(rec, "NOT_SERVING")) == 4
            and min(checks_of(rec, "NOT_SERVING").values()) >= 4
        ),
        15,
        "4 NOT_SERVING checks per slot",
    )
    with pytest.raises(grpc_pool.NoChannelAvailable):
        pool.get_channel()
    health_server.health.serve(True)
    started = time.monotonic()
    assert pool.wait_ready(timeout=10, min_ready=4).state == "healthy"
    print(
        f"\nSERVING again, health every {INTERVAL}s: whole after {time.monotonic() - started:.2f}s"
    )
    assert {pool.get_channel().channel_id for _ in range(4)} == before
    stats = pool.stats()
    assert (stats.connects, stats.disconnects, stats.connect_failures) == (4, 0, 0)
    assert rec.named("reconnect_scheduled") == [] and rec.named("connection_failed") == []
    assert len(health_server.health.peers) == 4, health_server.health.peers


def test_not_serving_from_the_start_connects_once_and_waits(
    make_pool: Any, health_server: HealthServer
) -> None:
    """A server NOT_SERVING from the start: the slot connects, stays out of rotation
    ("unhealthy") on its one connection, and enters rotation once SERVING."""
    health_server.health.serve(False)
    rec = Recorder()
    pool = make_pool(health_server.target, size=1, health_check_interval=INTERVAL, listeners=[rec])
    wait_until(lambda: checks_of(rec, "NOT_SERVING").get(0, 0) >= 4, 15, "4 checks")
    slot = pool.stats().slots[0]
    assert (slot.state, slot.connects, slot.connect_failures) == ("unhealthy", 1, 0)
    assert "NOT_SERVING" in (slot.last_error or "")
    assert pool.status().current_size == 0
    health_server.health.serve(True)
    pool.wait_ready(timeout=10)
    assert pool.get_channel().channel_id == slot.channel_id
    assert len(health_server.health.peers) == 1


def test_scale_down_and_close_retire_a_channel_kept_out_of_rotation(
    make_pool: Any, health_server: HealthServer
) -> None:
    """A kept, unhealthy channel is the pool's like any other: scale_down stops its
    slot first and closing the pool closes it (no thread or channel left)."""
    pool = make_pool(health_server.target, size=2, health_check_interval=INTERVAL)
    pool.wait_ready(timeout=10, min_ready=2)
    health_server.health.serve(False)
    wait_until(lambda: pool.status().current_size == 0, 10, "out of rotation")
    pool.scale_down(1)
    stats = pool.stats()
    assert [s.state for s in stats.slots] == ["unhealthy"] and stats.retiring == 1
    wait_until(lambda: pool.stats().retiring == 0, 10, "the stopped slot's channel closed")
    pool.close(grace=0)


def test_no_health_service_is_healthy_and_logged_once_per_pool(
    make_pool: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A server without grpc.health.v1.Health (UNIMPLEMENTED) counts as healthy;
    the warning is logged once for the pool, not per check per slot."""
    caplog.set_level(logging.DEBUG, logger="grpc_pool")
    server = HealthServer(with_health=False)
    try:
        rec = Recorder()
        pool = make_pool(server.target, size=4, health_check_interval=0.1, listeners=[rec])
        pool.wait_ready(timeout=10, min_ready=4)
        wait_until(lambda: len(rec.named("health_check")) >= 16, 15, "16 health checks")
        assert {e.status for e in rec.named("health_check")} == {"UNIMPLEMENTED"}
        assert pool.status().state == "healthy"
        pool.close(grace=0)
    finally:
        server.stop()
    said = [r for r in caplog.records if "no grpc.health.v1.Health service" in r.getMessage()]
    assert len(said) == 1 and said[0].levelno == logging.WARNING


def test_a_kept_unhealthy_connection_that_drops_reconnects_and_stays_out(
    make_pool: Any, make_server: Any
) -> None:
    """Transport failures still reconnect: a NOT_SERVING server restarted drops the
    kept connections (counted as disconnects, channels retired); the slots reconnect,
    stay out of rotation while NOT_SERVING and return at SERVING."""
    server = make_server()
    server.set_serving(False)
    pool = make_pool(server.target, size=2, health_check_interval=INTERVAL)
    wait_until(lambda: [s.state for s in pool.stats().slots] == ["unhealthy"] * 2, 10, "kept, out")
    server.restart()
    wait_until(lambda: pool.stats().disconnects == 2, 10, "both connections dropped")
    wait_until(
        lambda: (
            [s.state for s in pool.stats().slots] == ["unhealthy"] * 2
            and pool.stats().connects == 4
        ),
        15,
        "reconnected, still out",
    )
    assert pool.status().current_size == 0
    server.set_serving(True)
    assert pool.wait_ready(timeout=10, min_ready=2).state == "healthy"
    wait_until(lambda: pool.stats().retiring == 0, 10, "the dropped channels closed")
