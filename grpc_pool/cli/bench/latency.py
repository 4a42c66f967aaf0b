"""8: one slow backend among four (child processes, the others answering in 2 ms),
200 RPC/s open loop, deadline 1 s, pool size 8 (issue 26).

9a steady: the slow one answers in 60 ms; p99 of ``peak_ewma`` against the pool
over the three fast backends only (the reference). 9b episode: the slow one stalls
1.5 s for the middle third of the run; failed RPCs of ``peak_ewma`` against
``power_of_two``. Raw grpcio ``round_robin``, pool ``round_robin`` and
``power_of_two`` run beside them; every latency is counted from its scheduled
send. The latency distributions print as text (stderr)."""

from __future__ import annotations

import sys

from .backends import Load, backends, open_loop
from .core import FULL, Row, Settings
from .outliers import RATE, client

__all__ = ["CLIENTS", "latency_rows", "latency_runs"]

FAST, SLOW, STALL = "ok:2", "ok:60", "ok:1500"
DEADLINE = 1.0
CLIENTS = ("reference", "raw", "pool:round_robin", "pool:power_of_two", "pool:peak_ewma")
QUANTILES = (0.5, 0.9, 0.99, 0.999)


def latency_runs(
    scenario: str, seconds: float, kinds: tuple[str, ...] = CLIENTS
) -> dict[str, Load]:
    """Each client's open-loop run over the same four backends, the last one slow:
    ``steady`` (60 ms throughout) or ``episode`` (stalled 1.5 s for the middle third)."""
    results: dict[str, Load] = {}
    slow = SLOW if scenario == "steady" else FAST
    with backends([FAST, FAST, FAST, slow]) as running:
        for kind in kinds:
            at = []
            if scenario == "episode":
                at = [
                    (seconds / 3, lambda: running.set(3, STALL)),
                    (2 * seconds / 3, lambda: running.set(3, FAST)),
                ]
            good = 3 if kind == "reference" else None
            with client("pool:round_robin" if good else kind, running, good) as call:
                results[kind] = open_loop(call, RATE, seconds, DEADLINE, at if not good else ())
            running.set(3, slow)
    return results


def distribution(loads: dict[str, Load], title: str) -> str:
    """The latency distribution of each client as a text table (ms)."""
    head = " | ".join(f"p{q * 100:g}" for q in QUANTILES)
    lines = [f"{title}", f"| client | failed | {head} | max |", "|---" * (len(QUANTILES) + 3) + "|"]
    for kind, load in loads.items():
        cells = " | ".join(f"{load.quantile(q) * 1e3:.1f}" for q in QUANTILES)
        top = max(load.latencies, default=0.0) * 1e3
        lines.append(f"| {kind} | {load.failures} of {len(load.latencies)} | {cells} | {top:.1f} |")
    return "\n".join(lines)


def latency_rows(settings: Settings) -> list[Row]:
    full = settings is FULL  # quick: a smoke run, too few RPCs for a verdict
    seconds = 12.0 if full else 1.5
    steady = latency_runs("steady", seconds)
    episode = latency_runs("episode", seconds)
    print(distribution(steady, "9a steady, slow backend at 60 ms (ms):"), file=sys.stderr)
    print(distribution(episode, "9b episode, 1.5 s stall mid-run (ms):"), file=sys.stderr)
    ref, peak = steady["reference"].quantile(0.99), steady["pool:peak_ewma"].quantile(0.99)
    others = ", ".join(
        f"{k.partition(':')[2] or k} {steady[k].quantile(0.99) * 1e3:.1f} ms" for k in CLIENTS[1:4]
    )
    p2, pe = episode["pool:power_of_two"].failures, episode["pool:peak_ewma"].failures
    fails = ", ".join(f"{k.partition(':')[2] or k} {episode[k].failures}" for k in CLIENTS[:3])
    total = len(episode["pool:peak_ewma"].latencies)
    return [
        Row(
            "latency.steady",
            peak / ref if ref else None,
            f"p99 {peak * 1e3:.1f} ms",
            f"reference p99 {ref * 1e3:.1f} ms; {others}",
            ("<=", 2.0) if full else None,
        ),
        Row(
            "latency.episode",
            (pe + 1) / (p2 + 1),
            f"{pe} of {total} failed",
            f"power_of_two {p2}; {fails}",
            ("<=", 0.25) if full else None,
        ),
    ]
