"""Rows 9c-9e (``bench --tail``): one slow backend of four (issue 26), hedging
beside raw grpcio ``round_robin``, the pool without hedging and the fast-only
reference, one client after another against the same backends
(``grpc_pool.testing.deploy.tail``).
benchmarks/test_tail.py runs the same rows."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from typing import TextIO

from ...testing.deploy.tail import TailClient, TailResult, run_tail, summary
from .core import Row, format_table

__all__ = ["CLIENTS", "run_tail_rows", "tail_rows"]

CLIENTS = (
    "reference",
    "reference_hedging",
    "rr",
    "pool",
    "pool_hedging",
    "pool_hedging_10ms",
    "pool_p2c_hedging",
)


def _ms(seconds: float) -> str:
    return "inf" if math.isinf(seconds) else f"{seconds * 1000:.1f} ms"


def _check(result: TailResult) -> None:
    for client in result.clients.values():
        if client.error:
            raise RuntimeError(f"{client.name}: {client.error}")


def _others(result: TailResult, value: Callable[[TailClient], str]) -> str:
    names = {
        "rr": "raw rr",
        "pool": "pool rr",
        "pool_hedging_10ms": "hedging 10 ms/30%",
        "pool_p2c_hedging": "p2c + hedging",
    }
    return "; ".join(f"{label} {value(result[name])}" for name, label in names.items())


def steady_row(result: TailResult) -> Row:
    """9c: p99 with the slow backend at 60 ms, hedging / the fast-only reference."""
    _check(result)
    hedged, ref = result["pool_hedging"], result["reference"]
    return Row(
        "tail.steady",
        hedged.p99 / ref.p99,
        f"{summary(hedged)}; hedges {hedged.extra or 0:.1%} of RPCs",
        f"reference {_ms(ref.p99)}; " + _others(result, lambda c: _ms(c.p99)),
        ("<=", 2.0),
    )


def episode_row(result: TailResult) -> Row:
    """9d: failed RPCs while the slow backend stalls, hedging / raw round_robin."""
    _check(result)
    hedged, raw = result["pool_hedging"], result["rr"]
    return Row(
        "tail.episode",
        (hedged.failed + 1) / (raw.failed + 1),
        f"{summary(hedged)}; hedges {hedged.extra or 0:.1%} of RPCs",
        f"raw rr failed {raw.failed} of {raw.sent}; reference failed"
        f" {result['reference'].failed}; " + _others(result, lambda c: f"failed {c.failed}"),
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


def tail_rows(seconds: float = 6.0) -> list[Row]:
    steady = run_tail(False, CLIENTS, seconds=seconds)
    episode = run_tail(True, CLIENTS, seconds=seconds)
    for result in (steady, episode):
        print(f"tail ({'episode' if result.episode else 'steady'}):", file=sys.stderr)
        for client in result.clients.values():
            print(f"  {client.name:18s} {summary(client)} {client.stats}", file=sys.stderr)
    return [steady_row(steady), episode_row(episode), extra_row(steady, episode)]


def run_tail_rows(out: TextIO = sys.stdout, seconds: float = 6.0) -> int:
    """Rows 9c-9e; 1 if a scenario failed to run."""
    started = time.monotonic()
    try:
        rows = tail_rows(seconds)
    except Exception as exc:
        print(f"bench: tail latency failed: {exc!r}", file=sys.stderr)
        return 1
    print(
        "grpc_pool bench --tail: 4 backends answering in 2 ms, one slow; open loop of"
        f" 200 RPC/s for {seconds:g} s per client, one client after another (each its own"
        " stall in 9d), deadline 1 s, pool size 8",
        file=out,
    )
    print(format_table(rows), file=out)
    print(f"({time.monotonic() - started:.0f} s)", file=out)
    return 0
