"""``python -m grpc_pool bench --quick`` prints the whole results table.

No timing is checked here, ever: the numbers depend on the machine and its load.
"""

from __future__ import annotations

import os
import subprocess
import sys

from grpc_pool.cli.bench.core import HEADER, ROWS, Row, median_row, us
from grpc_pool.cli.bench.rpc import StreamRun


def test_bench_quick_prints_every_row() -> None:
    """The quick bench exits 0 and prints the header and exactly one line per
    benchmark, each with a measured ratio (an error would show "-")."""
    result = subprocess.run(
        [sys.executable, "-m", "grpc_pool", "bench", "--quick"],
        capture_output=True,
        text=True,
        timeout=110,  # under pytest-timeout's 120 s (quick bench: about 60 s)
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
            streams = (ROWS["streams.pool"], ROWS["streams.a105"])
            assert "FAILED: " in matching[0] or "skipped: " in matching[0], matching[0]
            assert label in streams, matching[0]
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


def test_median_row_ratio_is_its_columns_ratio() -> None:
    """A row's ratio is its two displayed medians divided, even when the median of the
    per-round ratios would say otherwise (row 3g once printed 1.19x MISS with the pool
    faster in its own columns)."""
    pool = [1.0e-3, 2.0e-3, 2.1e-3]  # median 2.0 ms
    raw = [0.5e-3, 2.2e-3, 2.5e-3]  # median 2.2 ms; per-round ratios 2.0, 0.91, 0.84
    row = median_row("channel.stream", pool, raw, us, "raw ", ("<=", 1.05))
    assert row.pool == "2000 us" and row.baseline == "raw 2200 us"
    assert row.ratio == 2.0e-3 / 2.2e-3
    assert row.verdict == "PASS"


def test_quick_miss_within_its_spread_is_noisy_not_miss() -> None:
    """In quick mode a targeted row missing by less than its own spread says
    "noisy: run full"; a clear miss, or any miss in a full run, stays MISS."""
    target = ("<=", 1.05)
    assert Row("rpc.unary", 1.10, "", "", target, spread=0.2, quick=True).verdict == (
        "noisy: run full"
    )
    assert Row("rpc.unary", 1.10, "", "", target, spread=0.2).verdict == "MISS"
    assert Row("rpc.unary", 1.50, "", "", target, spread=0.2, quick=True).verdict == "MISS"
    assert Row("rpc.unary", 1.10, "", "", target, quick=True).verdict == "MISS"  # no spread
    assert Row("rpc.unary", 1.00, "", "", target, spread=0.2, quick=True).verdict == "PASS"
