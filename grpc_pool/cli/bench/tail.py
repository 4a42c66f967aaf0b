"""Rows 9a-9f: one slow backend of four (issue 26), every client of the issue in one
run: the fast-only reference, raw grpcio ``round_robin``, the pool's
``round_robin``, ``power_of_two`` and ``peak_ewma``, hedging, ``peak_ewma`` with
hedging, and hedging on the fast-only reference (its extra RPCs), one client after
another against the same backends (``grpc_pool.testing.deploy.tail``).

``python -m grpc_pool bench`` runs these rows (quick: 1 s per client), ``bench
--tail`` runs them alone and prints the per-client table (``--tail-json PATH``
writes every latency for ``benchmarks/chart.py tail``); benchmarks/test_tail.py
runs the same rows."""

from __future__ import annotations

import json
import math
import sys
import time
from typing import TextIO

from ...testing.deploy.tail import TailClient, TailResult, run_tail, summary
from .core import Row, format_table

__all__ = ["CLIENTS", "LABELS", "client_table", "run_tail_rows", "tail_rows", "tail_runs"]

# Every client of the table, in its order, and how the table names it.
LABELS = {
    "reference": "reference: pool over the 3 fast backends only",
    "rr": "raw grpcio round_robin",
    "pool": "pool round_robin",
    "pool_p2c": "pool power_of_two",
    "pool_peak_ewma": "pool peak_ewma",
    "pool_hedging": "pool round_robin + hedging",
    "pool_peak_ewma_hedging": "pool peak_ewma + hedging",
    "reference_hedging": "reference + hedging (healthy backends)",
}
CLIENTS = tuple(LABELS)
TARGET_P99 = 2.0  # steady p99 within 2x the reference (issue 26's goal)


def _ms(seconds: float) -> str:
    return "inf" if math.isinf(seconds) else f"{seconds * 1000:.1f} ms"


def _check(result: TailResult) -> None:
    for client in result.clients.values():
        if client.error:
            raise RuntimeError(f"{client.name}: {client.error}")


def _hedged(client: TailClient) -> str:
    return "" if client.extra is None else f"; hedges {client.extra:.1%} of RPCs"


def _p99_row(key: str, name: str, steady: TailResult) -> Row:
    """p99 with the slow backend at 60 ms: ``name`` / the fast-only reference."""
    ref = steady["reference"]
    others = "; ".join(
        f"{n} {_ms(steady[n].p99)}" for n in ("rr", "pool", "pool_p2c") if n in steady.clients
    )
    return Row(
        key,
        steady[name].p99 / ref.p99,
        summary(steady[name]) + _hedged(steady[name]),
        f"reference p99 {_ms(ref.p99)}; {others}",
        ("<=", TARGET_P99),
    )


def steady_row(steady: TailResult) -> Row:
    """9c: p99 with the slow backend at 60 ms, hedging / the fast-only reference."""
    _check(steady)
    return _p99_row("tail.steady", "pool_hedging", steady)


def latency_steady_row(steady: TailResult) -> Row:
    """9a: p99 with the slow backend at 60 ms, peak_ewma / the fast-only reference."""
    _check(steady)
    return _p99_row("latency.steady", "pool_peak_ewma", steady)


def both_row(steady: TailResult, episode: TailResult) -> Row:
    """9f: p99 with the slow backend at 60 ms, peak_ewma + hedging / the reference."""
    _check(steady)
    row = _p99_row("tail.both", "pool_peak_ewma_hedging", steady)
    during = episode["pool_peak_ewma_hedging"]
    return Row(
        row.key, row.ratio, f"{row.pool}; stall: failed {during.failed}", row.baseline, row.target
    )


def latency_episode_row(episode: TailResult) -> Row:
    """9b: failed RPCs through the stall, peak_ewma / power_of_two (each + 1)."""
    _check(episode)
    peak, p2c = episode["pool_peak_ewma"], episode["pool_p2c"]
    return Row(
        "latency.episode",
        (peak.failed + 1) / (p2c.failed + 1),
        summary(peak),
        f"power_of_two failed {p2c.failed}; raw rr {episode['rr'].failed}",
        ("<=", 0.25),
    )


def episode_row(episode: TailResult) -> Row:
    """9d: failed RPCs through the stall, hedging / raw round_robin (each + 1)."""
    _check(episode)
    hedged, raw = episode["pool_hedging"], episode["rr"]
    return Row(
        "tail.episode",
        (hedged.failed + 1) / (raw.failed + 1),
        summary(hedged) + _hedged(hedged),
        f"raw rr failed {raw.failed} of {raw.sent}; reference failed {episode['reference'].failed}",
    )


def extra_row(steady: TailResult, episode: TailResult) -> Row:
    """9e: hedges sent per RPC on the fast-only reference (healthy backends)."""
    _check(steady)
    extra = steady["reference_hedging"].extra or 0.0
    during = episode["reference_hedging"].extra or 0.0
    return Row(
        "tail.extra",
        1 + extra,
        f"{extra:.1%} more RPCs (steady run), {during:.1%} (episode run)",
        f"reference without hedging: {steady['reference'].sent} RPCs",
        ("<=", 1.05),
    )


def tail_runs(seconds: float) -> tuple[TailResult, TailResult]:
    """The two scenarios, every client of ``CLIENTS``."""
    return run_tail("steady", CLIENTS, seconds=seconds), run_tail(
        "episode", CLIENTS, seconds=seconds
    )


def rows_of(steady: TailResult, episode: TailResult) -> list[Row]:
    return [
        latency_steady_row(steady),
        latency_episode_row(episode),
        steady_row(steady),
        episode_row(episode),
        extra_row(steady, episode),
        both_row(steady, episode),
    ]


def client_table(steady: TailResult, episode: TailResult) -> str:
    """The issue's table, one line per client: steady p50/p99, the stall's failures
    and p99, hedges sent per RPC."""
    lines = [
        "| client | steady: p50 | steady: p99 | episode: failed | episode: p99 | hedges |",
        "|---|---|---|---|---|---|",
    ]
    for name, label in LABELS.items():
        s, e = steady[name], episode[name]
        hedges = "-" if s.extra is None else f"{s.extra:.1%} / {e.extra or 0:.1%}"
        lines.append(
            f"| {label} | {_ms(s.p50)} | {_ms(s.p99)} | {e.failed} of {e.sent} |"
            f" {_ms(e.p99)} | {hedges} |"
        )
    return "\n".join(lines)


def tail_rows(seconds: float = 12.0, json_path: str | None = None) -> list[Row]:
    steady, episode = tail_runs(seconds)
    print(client_table(steady, episode), file=sys.stderr)
    if json_path:
        write_json(json_path, steady, episode)
    return rows_of(steady, episode)


def write_json(path: str, steady: TailResult, episode: TailResult) -> None:
    data = {
        "wall_seconds": [steady.seconds, episode.seconds],  # each scenario's whole run
        "labels": LABELS,
        "steady": steady.data(),
        "episode": episode.data(),
    }
    with open(path, "w") as f:
        json.dump(data, f)


def run_tail_rows(
    out: TextIO = sys.stdout, seconds: float = 12.0, json_path: str | None = None
) -> int:
    """Rows 9a-9f and the per-client table; 1 if a scenario failed to run."""
    started = time.monotonic()
    try:
        steady, episode = tail_runs(seconds)
        rows = rows_of(steady, episode)
    except Exception as exc:
        print(f"bench: tail latency failed: {exc!r}", file=sys.stderr)
        return 1
    if json_path:
        write_json(json_path, steady, episode)
    print(
        "grpc_pool bench --tail: 4 backends in child processes answering in 2 ms, one"
        " slow (60 ms steady; a 1.5 s stall for the middle third of the episode); open loop"
        f" of 200 RPC/s for {seconds:g} s per client, one client after another, latency"
        " from the scheduled send, deadline 1 s, pool size 8",
        file=out,
    )
    print(client_table(steady, episode), file=out)
    print(file=out)
    print(format_table(rows), file=out)
    print(f"({time.monotonic() - started:.0f} s)", file=out)
    return 0
