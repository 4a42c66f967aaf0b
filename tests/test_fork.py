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
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parent / "scripts" / "fork_scenario.py"


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
    echo_server_process: str, mode: str, fork_support: bool
) -> None:
    """Every child does RPCs over connections of its own (never the inherited
    ones); after each fork the parent's pool is still healthy and serving."""
    result = run_scenario(mode, echo_server_process, fork_support)
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


INFLIGHT = Path(__file__).parent / "scripts" / "fork_inflight.py"
# With GRPC_ENABLE_FORK_SUPPORT, grpcio's own child handler (before any of the pool's
# code runs in the child) waits about 1.3 s for gRPC core to shut down, then logs this
# and ends the child with status 64 (EX_USAGE). Seen on grpcio 1.60 on the loaded
# 2-core VM, in either order of the fork handlers and before issue 27 too: 1 child in
# 90-600, once 2 in a run of 20 (stderr empty then: grpcio logs to a NullHandler
# unless told otherwise).
GRPC_CHILD_GAVE_UP = "Failed to shutdown gRPC Core after fork()"


@pytest.mark.parametrize(
    ("fork_support", "options", "forks"),
    [
        (False, (), 20),
        (True, (), 20),
        (False, ("subscribe",), 20),
        (True, ("subscribe", "grpc-first"), 10),
        (True, ("futures", "register-early"), 10),
    ],
    ids=[
        "default-env",
        "fork-support",
        "subscribe-fallback",
        "subscribe-grpc-first",
        "futures-register-early",
    ],
)
def test_fork_with_rpcs_in_flight(
    echo_server_process: str, fork_support: bool, options: tuple[str, ...], forks: int
) -> None:
    """Forks while 16 threads are mid-RPC through pool.channel: no child crashes
    (new RPCs are held and those in flight drain before the fork), every child's
    first RPC (wait_for_ready, within 10 s: a failed first attempt is retried) works
    on connections of its own, the parent's RPCs all succeed, and every fork found
    the pool quiesced (no park timeout); also when the pool watches connectivity
    through grpcio's subscribe() pollers (the fallback), and when grpcio's own fork
    handler runs before the pool's and holds those pollers (GRPC_ENABLE_FORK_SUPPORT,
    grpcio's handlers installed after the pool's). With fork support and the pool's
    handlers installed before the process's first channel, the pool has grpcio
    install its own first, so the pool's run first and futures in flight (completed
    by grpcio's threads, which grpcio's handler holds) drain before every fork (the
    script gives that row a 2 s drain: with the order right, one fork in one loaded CI
    run waited out the default 0.5 s, none in 900 loaded forks since; futures held
    by grpcio's handler outlast any drain). One
    child in ten may be ended by grpcio's own child handler (GRPC_CHILD_GAVE_UP)."""
    env = {k: v for k, v in os.environ.items() if k != "GRPC_ENABLE_FORK_SUPPORT"}
    env["GRPC_VERBOSITY"] = "ERROR"
    if fork_support:
        env["GRPC_ENABLE_FORK_SUPPORT"] = "1"
    done = subprocess.run(
        [sys.executable, str(INFLIGHT), echo_server_process, str(forks), "16", *options],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["forks"] == forks
    # grpcio's own give-up in a child: at most one child in ten, each logged by grpcio.
    gave_up = result["failed_exits"].count(64) if fork_support else 0
    logged = done.stderr.count(GRPC_CHILD_GAVE_UP)
    assert gave_up <= min(forks // 10, logged), (result, done.stderr[-2000:])
    assert result["crashed"] == 0 and result["failed"] == gave_up, (result, done.stderr[-2000:])
    assert result["parent_errors"] == 0, result
    assert result["unquiesced"] == 0, result  # a park timeout: PAUSE_TIMEOUT waited out
    if "grpc-first" in options:
        assert result["grpc_first"] is True, result  # the order this row is about
    if "register-early" in options:
        assert result["grpc_first"] is False, result  # the pool had grpcio's installed first
        assert result["undrained"] == 0, result  # no fork waited out fork_drain_timeout
    print(f"fork_support={fork_support}: {result}")
