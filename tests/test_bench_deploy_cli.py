"""``python -m grpc_pool bench --deploy`` and ``--tail``: the flags exist, and the
tables they print say what the scenario results hold (the scenarios themselves
run in tests/test_deploy.py, tests/test_hedging.py and the benchmarks)."""

from __future__ import annotations

import subprocess
import sys

from grpc_pool.cli.bench.deploy import kinds_table
from grpc_pool.cli.bench.tail import episode_row, extra_row, steady_row
from grpc_pool.testing.deploy import HOWS, ClientResult, ScenarioResult
from grpc_pool.testing.deploy.tail import TailClient, TailResult


def test_bench_help_lists_deploy_and_tail() -> None:
    """Both flags are on the bench command."""
    out = subprocess.run(
        [sys.executable, "-m", "grpc_pool", "bench", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert "--deploy" in out and "--tail" in out


def _client(name: str, failures: list[tuple[str, str]]) -> ClientResult:
    failed = [
        {"rid": f"{name}{i}", "kind": kind, "code": code, "details": code, "seen_md": False}
        for i, (kind, code) in enumerate(failures)
    ]
    return ClientResult(name, 60, failed, {}, None, dict.fromkeys(HOWS, 10))


def test_kinds_table_counts_failures_per_kind_and_client() -> None:
    """One row per kind and one for all, one column per client: failed of all."""
    pool = _client("pool", [("bidi", "CANCELLED"), ("unary_future", "UNAVAILABLE")])
    raw = _client("rr_retry", [])
    result = ScenarioResult("t", {"pool": pool, "rr_retry": raw}, [], set(), 1.0)
    lines = kinds_table(result, ("pool", "rr_retry")).splitlines()
    assert len(lines) == 2 + len(HOWS) + 1
    by_kind = {line.split(" | ")[0].strip("| "): line for line in lines[2:]}
    assert "1 of 11 (CANCELLED 1)" in by_kind["bidi"]
    assert "1 of 11 (UNAVAILABLE 1)" in by_kind["unary_future"]
    assert "0 of 10 (none)" in by_kind["unary"]
    assert "2 of 62" in by_kind["all"] and "0 of 60 (none)" in by_kind["all"]


def test_tail_rows_compare_what_they_say() -> None:
    """9c is the hedging client's p99 over the reference's, 9d failures + 1 over raw
    round_robin's + 1, 9e one plus the hedges per RPC on healthy backends."""
    names = ("reference", "reference_hedging", "rr", "pool", "pool_hedging")
    names += ("pool_hedging_10ms", "pool_p2c_hedging")

    def clients(slow: float, failed: int) -> dict[str, TailClient]:
        made = {n: TailClient(n, 100, 0, [0.004] * 100, {"hedges": 0}) for n in names}
        made["pool_hedging"] = TailClient("pool_hedging", 100, failed, [slow] * (100 - failed))
        made["rr"] = TailClient("rr", 100, 9, [0.004] * 91)
        made["reference_hedging"].stats = {"hedges": 3}
        return made

    steady = TailResult(False, clients(0.008, 0), 1.0)
    episode = TailResult(True, clients(0.004, 1), 1.0)
    assert steady_row(steady).ratio == 2.0
    assert episode_row(episode).ratio == (1 + 1) / (9 + 1)
    assert extra_row(steady, episode).ratio == 1.03
