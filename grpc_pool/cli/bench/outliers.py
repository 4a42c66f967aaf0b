"""8a-8c (issue 25): one bad backend among four, each in a child process, under an
open-loop load (the one harness of ``grpc_pool.testing.deploy.tail``, scenario
``failing``): the last backend answers every call INTERNAL at once; 200 RPC/s for
8 s, pool size 8; failed RPCs of the pool's strategies against raw grpcio
``round_robin`` under its own ``outlier_detection_experimental`` (gRFC A50,
failure percentage, interval 1 s), with raw ``round_robin`` and the pool over the
three good backends beside them, in the same run, one client after another.
"""

from __future__ import annotations

import sys

from ...testing.deploy.tail import TailClient, TailResult, run_tail
from .core import FULL, Row, Settings

__all__ = ["KINDS", "ejection_rows"]

# The clients (testing.deploy.tail's names) and the row each strategy fills.
KINDS = ("reference", "rr", "rr_od", "pool", "pool_p2c", "pool_peak_ewma")
STRATEGIES = {"round_robin": "pool", "power_of_two": "pool_p2c", "peak_ewma": "pool_peak_ewma"}


def _failed(client: TailClient) -> str:
    share = 100.0 * client.failed / max(1, client.sent)
    return f"{client.failed} of {client.sent} failed ({share:.1f}%)"


def ejection_rows(settings: Settings) -> list[Row]:
    seconds = 8.0 if settings is FULL else 1.0  # quick: a smoke run of the rows
    result = run_tail("failing", KINDS, seconds=seconds)
    for client in result.clients.values():
        if client.error:
            raise RuntimeError(f"{client.name}: {client.error}")
    od = result["rr_od"]
    others = f"raw rr+A50 {_failed(od)}; raw rr {result['rr'].failed}"
    others += f"; reference {result['reference'].failed}"
    print(_table(result), file=sys.stderr)
    return [
        Row(
            f"outliers.{strategy}",
            (result[name].failed + 1) / (od.failed + 1),
            _failed(result[name]),
            others,
            ("<=", 1.0),
        )
        for strategy, name in STRATEGIES.items()
    ]


def _table(result: TailResult) -> str:
    lines = ["| client | failed | p50 | p99 |", "|---|---|---|---|"]
    for name, client in result.clients.items():
        p50, p99 = client.p50 * 1e3, client.p99 * 1e3
        lines.append(f"| {name} | {_failed(client)} | {p50:.1f} ms | {p99:.1f} ms |")
    return "\n".join(lines)
