"""``python -m grpc_pool bench --deploy`` and ``--tail``: the flags exist, and the
tables they print say what the scenario results hold (the scenarios themselves
run in tests/test_deploy.py, tests/test_hedging.py and the benchmarks)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from grpc_pool.cli.bench.deploy import kinds_table
from grpc_pool.cli.bench.tail import (
    CLIENTS,
    both_row,
    client_table,
    episode_row,
    extra_row,
    latency_episode_row,
    latency_steady_row,
    rows_of,
    steady_row,
)
from grpc_pool.testing.deploy import HOWS, ClientResult, ScenarioResult
from grpc_pool.testing.deploy.tail import TailClient, TailResult, run_tail


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
    """9a is peak_ewma's p99 over the reference's, 9b its failures + 1 over
    power_of_two's + 1, 9c hedging's p99 over the reference's, 9d its failures + 1
    over raw round_robin's + 1, 9e one plus the hedges per RPC on healthy backends,
    9f peak_ewma + hedging's p99 over the reference's; the client table has one line
    per client of the issue."""

    def clients(slow: float, failed: int) -> dict[str, TailClient]:
        made = {n: TailClient(n, 100, 0, [0.004] * 100) for n in CLIENTS}
        made["pool_hedging"] = TailClient("pool_hedging", 100, failed, [slow] * (100 - failed))
        made["pool_peak_ewma"] = TailClient(
            "pool_peak_ewma", 100, failed, [slow / 2] * (100 - failed)
        )
        made["pool_p2c"] = TailClient("pool_p2c", 100, 7, [0.004] * 93)
        made["pool_peak_ewma_hedging"] = TailClient("pool_peak_ewma_hedging", 100, 0, [0.006] * 100)
        made["rr"] = TailClient("rr", 100, 9, [0.004] * 91)
        made["reference_hedging"].stats = {"hedges": 3}
        return made

    steady = TailResult("steady", clients(0.008, 0), 1.0)
    episode = TailResult("episode", clients(0.004, 1), 1.0)
    assert latency_steady_row(steady).ratio == 1.0
    assert latency_episode_row(episode).ratio == (1 + 1) / (7 + 1)
    assert steady_row(steady).ratio == 2.0
    assert episode_row(episode).ratio == (1 + 1) / (9 + 1)
    assert extra_row(steady, episode).ratio == 1.03
    assert both_row(steady, episode).ratio == 1.5
    assert [r.key for r in rows_of(steady, episode)] == [
        "latency.steady",
        "latency.episode",
        "tail.steady",
        "tail.episode",
        "tail.extra",
        "tail.both",
    ]
    table = client_table(steady, episode).splitlines()
    assert len(table) == 2 + len(CLIENTS)
    assert "| raw grpcio round_robin | 4.0 ms | inf | 9 of 100 | inf | - |" in table


def test_a_failed_rpc_counts_as_slower_than_any_success() -> None:
    """A failure is never a fast latency: 2 failed of 100 put the p99 at inf, and an
    unknown scenario is refused before any backend starts."""
    assert TailClient("c", 100, 2, [0.001] * 98).p99 == float("inf")
    assert TailClient("c", 100, 0, [0.001] * 100).p99 == 0.001
    with pytest.raises(ValueError, match="scenario='stalled'"):
        run_tail("stalled")
