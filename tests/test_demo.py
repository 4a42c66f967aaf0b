"""The main job: ``python -m grpc_pool demo`` runs on an embedded server and recovers."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest


def test_demo_runs_and_recovers() -> None:
    """The demo exits 0 and prints a summary: the pool's RPC counts beside two raw
    grpcio channels' (round_robin, with and without a retryPolicy) from the same run,
    the pool's TCP connections and the time to recover."""
    result = subprocess.run(
        [sys.executable, "-m", "grpc_pool", "demo", "--seconds", "3", "--threads", "3"],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if k != "GRPC_VERBOSITY"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "summary:" in out and "RPCs ok:" in out
    assert "time to recover" in out and "did NOT recover" not in out
    assert "raw grpcio round_robin, RPCs ok:" in out
    assert "raw grpcio round_robin + retryPolicy, RPCs ok:" in out
    # One connection per slot at the start, plus one per reconnect (3 servers restarted).
    seen = re.search(r"TCP connections the servers saw from the pool: (\d+)", out)
    reconnects = re.search(r"reconnects: (\d+)", out)
    assert seen and reconnects, out
    assert int(seen[1]) >= 4 + 1 and int(reconnects[1]) >= 1, out
    # The timeline reads the clock for each line: no time shown twice, none going back.
    times = [float(t) for t in re.findall(r"^t=\s*([\d.]+)s", out, flags=re.MULTILINE)]
    assert len(times) >= 3 and times == sorted(set(times)), out
    # gRPC core's INFO lines (GOAWAY, handshakes: "I1201 12:00:00.000 ... file.cc:12]")
    # stay off: the command line sets GRPC_VERBOSITY=ERROR before grpc is imported.
    assert not re.search(r"^[IW]\d{4} ", result.stderr, flags=re.MULTILINE), result.stderr


def test_demo_rejects_bad_arguments() -> None:
    """Bad arguments give a one-line usage error and exit code 2, not a traceback."""
    result = subprocess.run(
        [sys.executable, "-m", "grpc_pool", "demo", "--size", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and "--size" in result.stderr


@pytest.mark.parametrize(
    "argv",
    [["nope"], ["demo", "--size", "x"], ["check", "127.0.0.1:1", "--bogus"], []],
    ids=["unknown-command", "bad-int", "unknown-option", "no-command"],
)
def test_cli_user_errors_are_one_line(argv: list[str]) -> None:
    """Any argument error: exactly one line on stderr, exit code 2, no traceback."""
    result = subprocess.run(
        [sys.executable, "-m", "grpc_pool", *argv], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "error:" in lines[0], result.stderr
