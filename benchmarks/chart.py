"""Charts for the docs, drawn from the benchmarks' own output (extra ``charts``:
``pip install -e '.[charts]'``, matplotlib).

    python -m grpc_pool bench --fleet --fleet-json benchmarks/data/fleet.json
    python benchmarks/chart.py fleet benchmarks/data/fleet.json docs/img/fleet-scale-out.png

    GRPC_POOL_CHART_DATA=benchmarks/data python -m pytest benchmarks/test_fleet.py -k loopback
    python benchmarks/chart.py loopback benchmarks/data/fleet-loopback.json \
        docs/img/fleet-loopback.png

Each chart is a function from the benchmark's data (parsed JSON) to a matplotlib
Figure, registered in ``CHARTS`` under the name given on the command line. To add
one: write ``def draw_<name>(data: Any) -> Figure``, add it to ``CHARTS``, say in its
docstring which command writes its input.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

Chart = Callable[[Any], Any]  # data -> matplotlib.figure.Figure

# The placements the fleet chart shows (keys of ``bench --fleet``'s JSON), in order.
FLEET_PANELS = ("before #23 (sticky)", "pool", "pool, fleet_index")


def draw_fleet(data: Any) -> Any:
    """Connections per backend before a scale-out (K backends) and after it (2K, added
    one at a time), one panel per placement. Input: ``bench --fleet --fleet-json``."""
    from matplotlib.figure import Figure

    panels = [m for m in FLEET_PANELS if m in data]
    figure = Figure(figsize=(10, 2.6 * len(panels)), layout="constrained")
    axes = figure.subplots(len(panels), 1, sharex=True, sharey=True, squeeze=False)[:, 0]
    for ax, mode in zip(axes, panels, strict=True):
        run = data[mode]
        k = run["k"]
        before = run["per_backend"]["start"]
        after = run["per_backend"]["out, one at a time"]
        xs = range(len(after))
        ax.bar([x - 0.2 for x in range(k)], before, width=0.4, color="#9e9e9e", label="before: K")
        colours = ["#1f77b4" if x < k else "#ff7f0e" for x in xs]
        ax.bar([x + 0.2 for x in xs], after, width=0.4, color=colours, label="after: 2K")
        fair = sum(after) / len(after)
        ax.axhline(fair, color="black", linestyle="--", linewidth=0.8, label="fair share at 2K")
        new_share = sum(after[k:]) / (sum(after) / 2) if sum(after) else 0.0
        ax.set_title(
            f"{mode}: new backends (orange) hold {new_share:.0%} of their fair share",
            fontsize=10,
        )
        ax.set_ylabel("connections")
    axes[0].legend(loc="upper right", fontsize=8)
    axes[-1].set_xlabel(
        f"backend ({data[panels[0]]['pools']} pools x {data[panels[0]]['slots']} slots;"
        f" backends {k}..{2 * k - 1} added one at a time)"
    )
    return figure


def draw_loopback(data: Any) -> Any:
    """The loopback fleet's new backends' share over time (connections, the pools'
    RPCs, raw round_robin's RPCs), one panel per run, the events marked. Input:
    benchmarks/test_fleet.py with ``GRPC_POOL_CHART_DATA``."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 2.8 * len(data)), layout="constrained")
    axes = figure.subplots(len(data), 1, sharex=True, squeeze=False)[:, 0]
    styles = {
        "connections": ("#ff7f0e", "-"),
        "pool RPCs": ("#1f77b4", "--"),
        "round_robin RPCs": ("#d62728", ":"),
    }
    for ax, (title, run) in zip(axes, data.items(), strict=True):
        for name, (colour, line) in styles.items():
            points = run[name]
            label = (
                name if name == "round_robin RPCs" else f"pool {name}".replace("pool pool", "pool")
            )
            ax.plot([t for t, _ in points], [s for _, s in points], line, color=colour, label=label)
        for when, event in run["events"]:
            ax.axvline(when, color="#9e9e9e", linewidth=0.8)
            ax.annotate(event, (when, 1.0), fontsize=7, rotation=90, va="top", ha="right")
        ax.axhline(0.5, color="black", linestyle="--", linewidth=0.6)
        failed = run["failed"]
        ax.set_title(
            f"{title}: {run['processes']} processes x {run['pools']} pools of {run['size']};"
            f" failed RPCs: pool {failed['pool']}, round_robin {failed['rr']}",
            fontsize=10,
        )
        ax.set_ylabel("new backends' share")
        ax.set_ylim(0, 1.05)
    axes[0].legend(loc="center right", fontsize=8)
    axes[-1].set_xlabel("seconds (fair share of the 4 new of 8 backends: 50%, dashed)")
    return figure


CHARTS: dict[str, Chart] = {"fleet": draw_fleet, "loopback": draw_loopback}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("chart", choices=sorted(CHARTS))
    parser.add_argument("data", help="the benchmark's JSON output")
    parser.add_argument("out", help="the image to write (PNG)")
    args = parser.parse_args(argv)
    with open(args.data) as f:
        data = json.load(f)
    figure = CHARTS[args.chart](data)
    figure.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
