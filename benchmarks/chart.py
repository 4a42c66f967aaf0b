"""Charts for the docs, drawn from the benchmarks' own output (extra ``charts``:
``pip install -e '.[charts]'``, matplotlib).

    python -m grpc_pool bench --fleet --fleet-json benchmarks/data/fleet.json
    python benchmarks/chart.py fleet benchmarks/data/fleet.json docs/img/fleet-scale-out.png

    python -m grpc_pool bench --tail --tail-json benchmarks/data/tail.json
    python benchmarks/chart.py tail benchmarks/data/tail.json docs/img/tail-latency.png

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


# The tail chart's clients (keys of ``bench --tail``'s JSON): colour, line style.
TAIL_STYLES = {
    "reference": ("black", "-"),
    "rr": ("#d62728", ":"),
    "pool": ("#ff7f0e", "--"),
    "pool_p2c": ("#9467bd", "--"),
    "pool_peak_ewma": ("#1f77b4", "-"),
    "pool_hedging": ("#2ca02c", "-."),
    "pool_peak_ewma_hedging": ("#17becf", "-"),
}


def draw_tail(data: Any) -> Any:
    """Latency CCDF per client (the share of RPCs slower than x, log-log), one panel
    per scenario; a failed RPC counts as slower than every x, so a curve that ends in
    a plateau ends at its share of failures. Input: ``bench --tail --tail-json``."""
    from matplotlib.figure import Figure

    scenarios = {
        "steady": "steady: 1 of 4 backends answers in 60 ms (others 2 ms)",
        "episode": "episode: 1 of 4 stalls 1.5 s for the middle third (deadline 1 s)",
    }
    figure = Figure(figsize=(12, 7.5), layout="constrained")
    axes = figure.subplots(2, 1, sharex=True)
    for ax, (key, title) in zip(axes, scenarios.items(), strict=True):
        for name, (colour, line) in TAIL_STYLES.items():
            client = data[key].get(name)
            if not client or not client["sent"]:
                continue
            sent, failed = client["sent"], client["failed"]
            xs = client["latencies_ms"]
            # Share of all RPCs (failures included) slower than each success's latency.
            ys = [(len(xs) - 1 - i + failed) / sent for i in range(len(xs))]
            xs, ys = [x for x, y in zip(xs, ys, strict=True) if y > 0], [y for y in ys if y > 0]
            if failed:  # the plateau of failures, drawn out to the deadline
                xs, ys = [*xs, 1000.0], [*ys, failed / sent]
            label = f"{data['labels'][name]} (failed {failed})"
            ax.step(xs, ys, where="post", color=colour, linestyle=line, label=label)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_ylim(1 / 3000, 1.0)
        ax.axhline(0.01, color="#9e9e9e", linewidth=0.6)
        ax.annotate("p99", (1.0, 0.01), fontsize=7, va="bottom", color="#616161")
        ax.set_title(title, fontsize=10)
        ax.set_ylabel("share of RPCs slower than x")
        ax.grid(True, which="major", linewidth=0.3)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7)
    axes[-1].set_xlabel(
        "latency from the scheduled send, ms (200 RPC/s open loop, pool of 8, one client at a time)"
    )
    return figure


CHARTS: dict[str, Chart] = {"fleet": draw_fleet, "loopback": draw_loopback, "tail": draw_tail}


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
