"""``python -m grpc_pool bench --quick`` prints the whole results table.

No timing is checked here, ever: the numbers depend on the machine and its load.
"""

from __future__ import annotations

import os
import subprocess
import sys

from grpc_pool._bench import HEADER, ROWS


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
        assert ratio.endswith("x"), matching[0]
