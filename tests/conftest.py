"""Shared fixtures: real echo servers on loopback port 0, pools closed after each
test, and a check that no thread a test started outlives it."""

from __future__ import annotations

import inspect
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from grpc import _channel as grpc_channel

import grpc_pool
from grpc_pool.testing.echo import EchoServer

# Fast reconnects for tests; the defaults follow the gRPC spec (1 s .. 120 s).
FAST = dict(
    insecure=True,
    backoff_initial=0.05,
    backoff_max=0.5,
    backoff_jitter=0.2,
    connect_timeout=5.0,
    retire_grace=1.0,
)
THREAD_EXIT_TIMEOUT = 10.0
# What a generated stub passes when building a multi-callable: grpcio-tools 1.63+
# stubs pass _registered_method=True; older grpcio has no such argument (and no
# stub passes it), so tests pass it only where grpcio takes it (.ci/floor.txt).
REGISTERED: dict[str, bool] = (
    {"_registered_method": True}
    if "_registered_method" in inspect.signature(grpc_channel.Channel.unary_unary).parameters
    else {}
)


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    """Poll ``predicate`` (bounded); fail the test if it stays false."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(0.01)


class Recorder:
    """A listener that keeps every event, thread-safe."""

    def __init__(self) -> None:
        self.events: list[grpc_pool.PoolEvent] = []
        self._lock = threading.Lock()

    def __call__(self, event: grpc_pool.PoolEvent) -> None:
        with self._lock:
            self.events.append(event)

    def named(self, name: str) -> list[Any]:
        with self._lock:
            return [e for e in self.events if e.name == name]


def pool_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("grpc_pool-")]


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    """Every thread started during a test (pool, gRPC pollers, servers) ends after it."""
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + THREAD_EXIT_TIMEOUT
    while True:
        leaked = [t for t in threading.enumerate() if t not in before and t.is_alive()]
        if not leaked:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"threads still alive after the test: {[t.name for t in leaked]}")
        time.sleep(0.02)


@pytest.fixture
def server() -> Iterator[EchoServer]:
    srv = EchoServer().start()
    yield srv
    srv.stop()


@pytest.fixture
def make_server() -> Iterator[Callable[..., EchoServer]]:
    servers: list[EchoServer] = []

    def make(**kwargs: Any) -> EchoServer:
        srv = EchoServer(**kwargs).start()
        servers.append(srv)
        return srv

    yield make
    for srv in servers:
        srv.stop()


@pytest.fixture
def make_pool() -> Iterator[Callable[..., grpc_pool.Pool]]:
    """Pools with fast test settings (overridable), closed at teardown."""
    pools: list[grpc_pool.Pool] = []

    def make(target: str, **options: Any) -> grpc_pool.Pool:
        pool = grpc_pool.Pool(target, **{**FAST, **options})
        pools.append(pool)
        return pool

    yield make
    for pool in pools:
        pool.close(grace=0)
    # These pools' own threads (a leak from another test is that test's failure).
    mine = [t.name for t in pool_threads() if any(_of_pool(t.name, p.name) for p in pools)]
    assert not mine, f"pool threads alive after close: {mine}"


def _of_pool(thread_name: str, pool_name: str) -> bool:
    """grpc_pool-{writer,worker,listener}-<pool>[-<n>] belongs to <pool>."""
    rest = thread_name.split("-", 2)[-1] if thread_name.count("-") >= 2 else ""
    return rest == pool_name or (
        rest.startswith(pool_name + "-") and rest[len(pool_name) + 1 :].isdigit()
    )


@pytest.fixture
def dead_target() -> str:
    """A loopback port with nothing listening (a server started and stopped)."""
    srv = EchoServer().start()
    srv.stop()
    return srv.target


ECHO_SERVER_SCRIPT = (
    "import sys\n"
    "from grpc_pool.testing.echo import EchoServer\n"
    "s = EchoServer().start()\n"
    "print(s.port, flush=True)\n"
    "sys.stdin.read()\n"
    "s.stop()\n"
)


@pytest.fixture(scope="module")
def echo_server_process() -> Iterator[str]:
    """An echo server in a process of its own (its target): for tests that fork,
    where a server's threads inside gRPC in the forking process would be a hazard.
    Stopped by closing its stdin; killed if it does not exit in time."""
    proc = subprocess.Popen(
        [sys.executable, "-c", ECHO_SERVER_SCRIPT],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        port = proc.stdout.readline().strip()  # bounded: the process prints or dies
        assert port.isdigit(), "echo server process did not start"
        yield f"127.0.0.1:{port}"
    finally:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.close()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        proc.stdout.close()


def self_signed(folder: Path, subject: str, names: str) -> tuple[bytes, bytes]:
    """(key, certificate) PEM of a self-signed certificate made by the openssl CLI in
    ``folder`` (``subject`` e.g. "/CN=localhost", ``names`` its subjectAltName);
    the calling test is skipped where openssl is missing."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl CLI is needed to make a certificate")
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"),
            *("-keyout", str(folder / "key.pem"), "-out", str(folder / "cert.pem")),
            *("-subj", subject, "-addext", f"subjectAltName={names}"),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return (folder / "key.pem").read_bytes(), (folder / "cert.pem").read_bytes()
