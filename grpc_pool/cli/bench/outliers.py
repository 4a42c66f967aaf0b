"""7: one bad backend among four, each in a child process, under an open-loop load.

8a-8c (issue 25): one backend answers every call INTERNAL at once; 200 RPC/s for
8 s, pool size 8; failed RPCs of the pool's strategies against raw grpcio
``round_robin`` under its own ``outlier_detection_experimental`` (gRFC A50,
failure percentage, interval 1 s), with raw ``round_robin`` and the pool over the
three good backends beside them, in the same run.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import grpc

from ..._pool import Pool
from .backends import WORK, Backends, Load, backends, open_loop
from .core import FULL, Row, Settings

__all__ = ["OD_CONFIG", "Client", "client", "ejection_rows", "ejection_runs"]

RATE = 200.0
POOL_SIZE = 8
# grpcio's own outlier ejection, with the pool's default figures (A50's minimum
# hosts of 5 would never judge 4 backends).
OD_CONFIG = json.dumps(
    {
        "loadBalancingConfig": [
            {
                "outlier_detection_experimental": {
                    "interval": "1s",
                    "baseEjectionTime": "30s",
                    "maxEjectionTime": "300s",
                    "maxEjectionPercent": 50,
                    "failurePercentageEjection": {
                        "threshold": 85,
                        "enforcementPercentage": 100,
                        "minimumHosts": 3,
                        "requestVolume": 20,
                    },
                    "childPolicy": [{"round_robin": {}}],
                }
            }
        ]
    }
)
RR_CONFIG = json.dumps({"loadBalancingConfig": [{"round_robin": {}}]})

# A client: (the Work multi-callable, what closes it).
Client = tuple[Any, Callable[[], None]]


@contextmanager
def client(kind: str, running: Backends, good: int | None = None) -> Iterator[Any]:
    """``raw``, ``raw_od`` (grpcio round_robin, with A50), or ``pool:<strategy>``;
    ``good``: only the first ``good`` backends (the reference)."""
    addresses = running.addresses[:good] if good else running.addresses
    target = "ipv4:" + ",".join(addresses)
    if kind.startswith("raw"):
        config = OD_CONFIG if kind == "raw_od" else RR_CONFIG
        channel = grpc.insecure_channel(target, options=[("grpc.service_config", config)])
        try:
            grpc.channel_ready_future(channel).result(timeout=20)
            yield channel.unary_unary(WORK)
        finally:
            channel.close()
        return
    strategy = kind.partition(":")[2]
    pool = Pool(target, size=POOL_SIZE, insecure=True, strategy=strategy, name=f"bench-{kind}")
    try:
        pool.wait_ready(timeout=20, min_ready=POOL_SIZE)
        yield pool.channel.unary_unary(WORK)
    finally:
        pool.close(grace=0)


def ejection_runs(seconds: float, kinds: tuple[str, ...]) -> dict[str, Load]:
    """Each client's load, one after the other, over the same four backends (the last
    answering INTERNAL); ``reference``: the pool over the three good ones."""
    results: dict[str, Load] = {}
    with backends(["ok", "ok", "ok", "fail"]) as running:
        for kind in kinds:
            good = 3 if kind == "reference" else None
            with client("pool:round_robin" if good else kind, running, good) as call:
                results[kind] = open_loop(call, RATE, seconds)
    return results


def _failed(load: Load) -> str:
    total = len(load.latencies)
    return f"{load.failures} of {total} failed ({100.0 * load.failures / max(1, total):.1f}%)"


def ejection_rows(settings: Settings) -> list[Row]:
    seconds = 8.0 if settings is FULL else 1.0  # quick: a smoke run of the rows
    kinds = (
        "reference",
        "raw",
        "raw_od",
        "pool:round_robin",
        "pool:power_of_two",
        "pool:peak_ewma",
    )
    loads = ejection_runs(seconds, kinds)
    od = loads["raw_od"]
    others = f"raw rr+A50 {_failed(od)}; raw rr {loads['raw'].failures}"
    others += f"; reference {loads['reference'].failures}"
    print(_table(loads), file=sys.stderr)
    return [
        Row(
            f"outliers.{kind.partition(':')[2]}",
            (loads[kind].failures + 1) / (od.failures + 1),
            _failed(loads[kind]),
            others,
            ("<=", 1.0),
        )
        for kind in ("pool:round_robin", "pool:power_of_two", "pool:peak_ewma")
    ]


def _table(loads: dict[str, Load]) -> str:
    lines = ["| client | failed | p50 | p99 |", "|---|---|---|---|"]
    for kind, load in loads.items():
        p50, p99 = load.quantile(0.5) * 1e3, load.quantile(0.99) * 1e3
        lines.append(f"| {kind} | {_failed(load)} | {p50:.1f} ms | {p99:.1f} ms |")
    return "\n".join(lines)
