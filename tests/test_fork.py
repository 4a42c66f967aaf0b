"""Fork safety with real os.fork() children and multiprocessing (fork start
method), in the default environment and with GRPC_ENABLE_FORK_SUPPORT=1.

Each scenario runs in a fresh interpreter (tests/scripts/fork_scenario.py) with
the echo server in yet another process: a server's threads inside gRPC in the
forking process would be the very hazard under test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parent / "scripts" / "fork_scenario.py"
SERVER = (
    "import sys\n"
    "from grpc_pool._echo import EchoServer\n"
    "s = EchoServer().start()\n"
    "print(s.port, flush=True)\n"
    "sys.stdin.read()\n"
    "s.stop()\n"
)


@pytest.fixture(scope="module")
def server_target() -> Iterator[str]:
    """An echo server in its own process, stopped by closing its stdin."""
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        port = proc.stdout.readline().strip()
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


def run_scenario(mode: str, target: str, fork_support: bool) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if k != "GRPC_ENABLE_FORK_SUPPORT"}
    env["GRPC_VERBOSITY"] = "ERROR"
    if fork_support:
        env["GRPC_ENABLE_FORK_SUPPORT"] = "1"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), mode, target],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


@pytest.mark.parametrize("fork_support", [False, True], ids=["default-env", "fork-support"])
@pytest.mark.parametrize("mode", ["os_fork", "multiprocessing"])
def test_children_rebuild_and_parent_keeps_serving(
    server_target: str, mode: str, fork_support: bool
) -> None:
    """Every child does RPCs over connections of its own (never the inherited
    ones); after each fork the parent's pool is still healthy and serving."""
    result = run_scenario(mode, server_target, fork_support)
    parent_peers = set(result["parent_peers"])  # type: ignore[arg-type]
    assert len(parent_peers) == 2
    children = result["children"]
    assert isinstance(children, list) and len(children) == 4
    for child in children:
        assert child["ok"] and child["status"] == 0, child
        peers = set(child["peers"])
        assert len(peers) == 2  # the child's own pool of 2
        assert not peers & parent_peers  # not the parent's connections
    assert result["parent_after"] and all(n == 2 for n in result["parent_after"])  # type: ignore[union-attr]
    assert result["parent_status"] == "healthy"
    print(f"{mode} fork_support={fork_support}: fork cost {result['fork_cost_max']:.3f}s")
