"""7a and 6c: a fleet of pools through a scale-out and back (issue 23).

7a simulates 1,000 pools with the writer's own placement function
(``python -m grpc_pool bench --fleet`` prints every column: the pool, with
``fleet_index``, the rule before issue 23, gRFC A68, raw round_robin). 6c runs the
real fleet on loopback (tests/deploy/fleet.py): 4 processes x 6 pools of 2 over
backends behind dnsmasq, 4 -> 8 -> 4 under load, raw round_robin over the same DNS
name in the same processes; ``-s`` prints the shares second by second, and with
``GRPC_POOL_CHART_DATA=DIR`` the run's shares over time go to DIR/fleet-loopback.json
(``benchmarks/chart.py loopback``).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from typing import Any

import pytest

from grpc_pool.cli.bench import core
from grpc_pool.cli.bench.fleet import fleet_row, print_fleet
from tests.deploy import DnsUnavailable
from tests.deploy.fleet import FleetRun, run_fleet

from .conftest import SETTINGS

Report = Callable[[list[core.Row]], None]

FAIR = 0.5  # 4 new backends of 8


def test_fleet_simulation(benchmark: Any, report: Report) -> None:
    """1,000 simulated pools of 4, 25 -> 50 -> 25 backends: the table of every placement."""
    quick = SETTINGS is core.QUICK
    rows = benchmark.pedantic(lambda: [fleet_row(quick)], rounds=1, iterations=1)
    print_fleet(sys.stdout, pools=200 if quick else 1000)
    report(rows)


def _share_at(run: FleetRun, seconds: float) -> float:
    out = run.when("scale-out")
    shares = [s for t, s in run.connection_share_after(out, out + seconds + 0.01)]
    return shares[-1] if shares else 0.0


def _rr_share(run: FleetRun) -> float:
    out, back = run.when("scale-out"), run.when("scale-in (DNS)")
    total = new = 0
    for bucket, counts in run.rpcs.get("rr", {}).items():
        if out <= bucket * 0.5 < back:
            total += sum(counts.values())
            new += sum(counts[h] for h in ("127.0.0.6", "127.0.0.7", "127.0.0.8", "127.0.0.9"))
    return new / total if total else 0.0


def test_fleet_on_loopback(benchmark: Any, report: Report) -> None:
    """The real fleet, random subsets then ``fleet_index``: shares over time, failed
    RPCs, time to 90% of the fair share. The ratio is the random subsets' (24 pools of
    2: their share varies run to run around the fair one); the cell adds fleet_index's."""

    def both() -> tuple[FleetRun, FleetRun]:
        return run_fleet(), run_fleet(fleet_index=True)

    try:
        run, fleet = benchmark.pedantic(both, rounds=1, iterations=1)
    except DnsUnavailable as exc:
        pytest.skip(str(exc))
    run.print()
    fleet.print()
    assert not run.errors and not fleet.errors, (run.errors, fleet.errors)
    folder = os.environ.get("GRPC_POOL_CHART_DATA")
    if folder:  # for benchmarks/chart.py loopback
        with open(os.path.join(folder, "fleet-loopback.json"), "w") as f:
            json.dump({"random subsets": run.to_json(), "fleet_index": fleet.to_json()}, f)
    share, exact = _share_at(run, 5.0), _share_at(fleet, 5.0)
    report(
        [
            core.Row(
                "deploy.fleet",
                share / FAIR,
                f"random subsets: {share:.0%} of connections on the new backends (fair"
                f" {FAIR:.0%}), >= 90% of fair after {_seconds(run)}, {run.failed('pool')}"
                f" failed of {run.ok['pool'] + run.failed('pool')}; fleet_index: {exact:.0%}"
                f" after {_seconds(fleet)}, {fleet.failed('pool')} failed",
                f"raw round_robin: {_rr_share(run):.0%} of its RPCs on the new backends;"
                f" {run.failed('rr')} failed of {run.ok['rr'] + run.failed('rr')}",
                target=(">=", 0.9),
            )
        ]
    )


def _seconds(run: FleetRun) -> str:
    took = run.time_to_share(0.9 * FAIR)
    return "never" if took is None else f"{took:.1f} s"
