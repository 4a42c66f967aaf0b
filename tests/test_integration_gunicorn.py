"""gunicorn with --preload: real gunicorn on 127.0.0.1 serving examples/gunicorn_app.py
with sync and gthread workers, in the default environment and with
GRPC_ENABLE_FORK_SUPPORT=1.

The pool is created in the master (at import, by --preload) and the master uses
it before forking (``when_ready`` records its peers). The echo server runs in a
process of its own: neither in this test process nor in gunicorn's master. Every
wait is bounded; gunicorn runs in its own session and is killed as a whole if it
does not stop on SIGTERM in time.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

pytest.importorskip("gunicorn", reason="pip install -e '.[integrations]'")

ROOT = Path(__file__).resolve().parent.parent
POOL_SIZE = 2
WORKERS = 2
START_TIMEOUT = 60.0
REQUESTS_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0
HTTP_TIMEOUT = 15.0

# The example's settings plus a when_ready hook (run in the master after the
# listening socket is bound, before any worker is forked) that uses the master's
# pool and records the connections it has, to compare with the workers'.
TEST_CONF = """\
import json
import os

from examples.gunicorn_conf import *  # noqa: F403


def when_ready(server):
    from examples.gunicorn_app import pool
    from grpc_pool.testing.echo import PEER

    pool.wait_ready(timeout=10, min_ready=pool.status().expected_size)
    call = lambda: pool.get_channel().unary_unary(PEER)(b"", timeout=5).decode()
    peers = sorted({call() for _ in range(4 * pool.status().expected_size)})
    with open(os.environ["MASTER_PEERS_FILE"], "w") as f:
        json.dump({"pid": os.getpid(), "peers": peers}, f)
"""


@dataclass
class Gunicorn:
    proc: subprocess.Popen[bytes]
    log: Path
    url: str
    master_pid: int
    master_peers: set[str]

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def wait_for(
    what: str, check: Callable[[], object], proc: subprocess.Popen[bytes], log: Path
) -> object:
    """Poll ``check()`` until it returns a truthy value (bounded by START_TIMEOUT)."""
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        value = check()
        if value:
            return value
        if proc.poll() is not None:
            pytest.fail(f"gunicorn exited ({proc.returncode}) before {what}:\n{log.read_text()}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}:\n{log.read_text()}")
        time.sleep(0.05)


def stop(proc: subprocess.Popen[bytes]) -> int:
    """SIGTERM (graceful), bounded wait, then SIGKILL to gunicorn's whole session."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # the master and any worker left
    return proc.wait(10)


@pytest.fixture
def gunicorn(
    request: pytest.FixtureRequest, echo_server_process: str, tmp_path: Path
) -> Iterator[Gunicorn]:
    worker_class, fork_support = request.param
    conf = tmp_path / "gunicorn_test_conf.py"
    conf.write_text(TEST_CONF)
    master_file = tmp_path / "master_peers.json"
    log = tmp_path / "gunicorn.log"
    env = {k: v for k, v in os.environ.items() if k != "GRPC_ENABLE_FORK_SUPPORT"}
    env.update(
        GRPC_POOL_TARGET=echo_server_process,
        GRPC_POOL_INSECURE="1",
        GRPC_POOL_SIZE=str(POOL_SIZE),
        GRPC_POOL_NAME="gunicorn-example",
        GRPC_VERBOSITY="ERROR",
        MASTER_PEERS_FILE=str(master_file),
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
    )
    if fork_support:
        env["GRPC_ENABLE_FORK_SUPPORT"] = "1"
    threads = ["--threads", "4"] if worker_class == "gthread" else []
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "--config",
        str(conf),
        "--preload",
        "--worker-class",
        worker_class,
        "--workers",
        str(WORKERS),
        *threads,
        "--bind",
        "127.0.0.1:0",  # a free port, picked by the OS; read back from the log
        "--no-control-socket",
        "--graceful-timeout",
        "5",
        "examples.gunicorn_app:app",
    ]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:

        def listening() -> str | None:
            found = re.search(r"Listening at: (http://127\.0\.0\.1:\d+)", log.read_text())
            return found.group(1) if found else None

        url = str(wait_for("the listening socket", listening, proc, log))
        # Written by when_ready in the master; read once complete.
        master = wait_for("the master's peers", lambda: _read_json(master_file), proc, log)
        assert isinstance(master, dict)
        wait_for(
            f"{WORKERS} workers ready",
            lambda: log.read_text().count("pool ready") >= WORKERS,
            proc,
            log,
        )
        yield Gunicorn(proc, log, url, int(master["pid"]), set(master["peers"]))
    finally:
        code = stop(proc)
        text = log.read_text(errors="replace")
        assert code == 0, f"gunicorn exit code {code}:\n{text}"
        assert "Traceback" not in text, text


def _read_json(path: Path) -> dict[str, object] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def get(url: str) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


CASES = [
    pytest.param(("sync", False), id="sync-default-env"),
    pytest.param(("sync", True), id="sync-fork-support"),
    pytest.param(("gthread", False), id="gthread-default-env"),
    pytest.param(("gthread", True), id="gthread-fork-support"),
]


@pytest.mark.parametrize("gunicorn", CASES, indirect=True)
def test_every_worker_serves_through_its_own_connections(gunicorn: Gunicorn) -> None:
    """With --preload the pool made in the master is rebuilt in each worker: every
    request succeeds, at least two worker processes (not the master) serve them, and
    each worker's backend connections (as the server sees them) are its own: at
    most the pool size per worker, none shared between workers, none of the
    master's. gunicorn then stops cleanly on SIGTERM (exit 0, no traceback)."""
    by_pid: dict[int, set[str]] = {}
    deadline = time.monotonic() + REQUESTS_TIMEOUT
    rounds = 0
    # A slow backend call (0.2 s) per request keeps a sync worker busy, so
    # concurrent requests spread over the workers; repeat until both served.
    with ThreadPoolExecutor(max_workers=8, thread_name_prefix="http-client") as clients:
        while rounds < 2 or len(by_pid) < WORKERS:
            assert time.monotonic() < deadline, f"only pids {sorted(by_pid)} served"
            rounds += 1
            urls = [f"{gunicorn.url}/peer?delay=0.2"] * 8 + [f"{gunicorn.url}/peer"] * 8
            for status, body in clients.map(get, urls):
                assert status == 200, body
                by_pid.setdefault(int(str(body["pid"])), set()).add(str(body["peer"]))
    assert gunicorn.master_pid not in by_pid
    assert len(gunicorn.master_peers) == POOL_SIZE
    seen: set[str] = set(gunicorn.master_peers)
    for pid, peers in by_pid.items():
        assert 1 <= len(peers) <= POOL_SIZE, (pid, peers)
        assert not peers & seen, f"worker {pid} shares connections: {peers & seen}"
        seen |= peers
    status, health = get(f"{gunicorn.url}/healthz")
    assert status == 200 and health["state"] == "healthy", health
    print(
        f"master {gunicorn.master_pid} peers {sorted(gunicorn.master_peers)}; "
        + "; ".join(f"worker {pid}: {sorted(peers)}" for pid, peers in sorted(by_pid.items()))
    )
