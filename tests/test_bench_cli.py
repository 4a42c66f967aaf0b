"""``python -m grpc_pool bench --quick`` prints the whole results table.

No timing is checked here, ever: the numbers depend on the machine and its load.
"""

from __future__ import annotations

import os
import subprocess
import sys

from grpc_pool.cli.bench.core import HEADER, ROWS
from grpc_pool.cli.bench.rpc import StreamRun


def test_bench_quick_prints_every_row() -> None:
    """The quick bench exits 0 and prints the header and exactly one line per
    benchmark, each with a measured ratio (an error would show "-")."""
    result = subprocess.run(
        [sys.executable, "-m", "grpc_pool", "bench", "--quick"],
        capture_output=True,
        text=True,
        timeout=90,
        env={**os.environ, "GRPC_VERBOSITY": "ERROR"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith("| ")]
    assert lines[0] == "| " + " | ".join(HEADER) + " |"
    assert len(lines) == 2 + len(ROWS), result.stdout
    for label in ROWS.values():
        matching = [line for line in lines if line.startswith(f"| {label} |")]
        assert len(matching) == 1, (label, result.stdout)
        ratio = matching[0].split(" | ")[1]
        if ratio == "-":  # no ratio only when a side failed, and then it says so
            assert "FAILED: " in matching[0] and label == ROWS["streams.pool"], matching[0]
        else:
            assert ratio.endswith("x"), matching[0]
    # Row 3e adds up: its ratio is its two figures divided (to display rounding).
    row = next(line for line in lines if line.startswith(f"| {ROWS['rpc.threads']} |"))
    cells = row.removesuffix(" |").split(" | ")
    pool_us = float(cells[4].split()[0])
    baseline_us = float(cells[5].split()[-2])
    assert abs(float(cells[1].rstrip("x")) - pool_us / baseline_us) <= 0.01 + 1 / baseline_us, row


def test_stream_run_with_failures_is_not_complete() -> None:
    """Row 4 gives no ratio against a run in which streams failed or never opened."""
    assert StreamRun([0.1, 0.2], {}, 0).complete(2)
    assert not StreamRun([0.1], {"UNAVAILABLE": 1}, 0).complete(2)
    assert not StreamRun([0.1], {}, 0).complete(2)
