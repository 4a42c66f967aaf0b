"""Rows 6a-6b and the per-API x kind table (``bench --deploy``): failed RPCs through
deploys, the pool beside raw grpcio ``round_robin`` + ``retryPolicy`` (and plain
``round_robin``) in the same run, with backends and each client in child processes
(``grpc_pool.testing.deploy``). benchmarks/test_deploy.py runs the same rows."""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from ...testing.deploy import (
    APIS,
    HOWS,
    ClientResult,
    DnsUnavailable,
    ScenarioResult,
    rolling_restart,
    rolling_update,
    run_scenario,
)
from .core import DEPLOY_ROWS, Row, format_table

__all__ = ["CLIENTS", "deploy_row", "kinds_table", "run_deploy", "summary"]

CLIENTS = ("pool", "rr_retry", "rr")
RAW = "rr_retry"


def summary(client: ClientResult) -> str:
    """The failures by what they were: "CANCELLED 3, not connected 1", or "none"."""
    short: Counter[str] = Counter()
    for (code, details), n in client.by_kind().items():
        if "failed to connect" in details or "connections to all backends failing" in details:
            short["not connected"] += n
        else:
            short[code] += n
    return ", ".join(f"{k} {v}" for k, v in short.most_common()) or "none"


def deploy_row(key: str, event: Callable[..., None], **options: Any) -> Row:
    """One deploy under the three clients at once; ratio (pool + 1) / (raw + 1)."""
    result = run_scenario(event, CLIENTS, title=DEPLOY_ROWS[key], threads=6, **options)
    result.print()
    pool, raw, rr = result["pool"], result[RAW], result["rr"]
    for client in (pool, raw, rr):
        if client.error:
            raise RuntimeError(f"{client.name}: {client.error}")
    return Row(
        key,
        (pool.failed + 1) / (raw.failed + 1),
        f"{pool.failed} failed of {pool.ok + pool.failed} ({summary(pool)})",
        f"rr+retryPolicy {raw.failed} failed of {raw.ok + raw.failed} ({summary(raw)});"
        f" rr {rr.failed} failed of {rr.ok + rr.failed} ({summary(rr)})",
    )


def every_api() -> ScenarioResult:
    """One graceful rolling restart of 3 backends under every API of the pool and
    raw round_robin + retryPolicy at once, a thread per kind in each client."""
    result = run_scenario(
        rolling_restart,
        (*APIS, RAW),
        title="graceful rolling restart, every API x kind",
        threads=len(HOWS),
        kinds=HOWS,
    )
    result.print()
    return result


def kinds_table(result: ScenarioResult, apis: Sequence[str] = (*APIS, RAW)) -> str:
    """Failed of all RPCs per kind (rows) and client (columns), as markdown."""
    names = {
        "pool": "insecure_channel()",
        "pool.channel": "pool.channel",
        "pool.get_channel": "get_channel()",
        "pool.stub": "stub()",
        RAW: "raw round_robin + retryPolicy",
    }
    header = ["kind", *(names.get(api, api) for api in apis)]
    lines = [header, ["---"] * len(header)]
    for how in (*HOWS, "all"):
        cells = [how]
        for api in apis:
            client = result[api] if how == "all" else result[api].of_kind(how)
            cells.append(f"{client.failed} of {client.ok + client.failed} ({summary(client)})")
        lines.append(cells)
    return "\n".join("| " + " | ".join(cells) + " |" for cells in lines)


def run_deploy(out: TextIO = sys.stdout) -> int:
    """Rows 6a-6b and the per-kind table; 1 if a scenario failed to run."""
    started = time.monotonic()
    rows: list[Row] = []
    failed = 0
    scenarios: list[tuple[str, Callable[[], Row]]] = [
        ("6a graceful rolling restart", lambda: deploy_row("deploy.restart", rolling_restart)),
        (
            "6b rolling update behind DNS",
            lambda: deploy_row("deploy.update", rolling_update, dns=True),
        ),
    ]
    for title, scenario in scenarios:
        print(f"bench: {title} ...", file=sys.stderr, flush=True)
        try:
            rows.append(scenario())
        except DnsUnavailable as exc:
            print(f"bench: {title} skipped: {exc}", file=sys.stderr)
        except Exception as exc:  # reported; the other scenarios still run
            failed += 1
            print(f"bench: {title} failed: {exc!r}", file=sys.stderr)
    print("bench: every API x kind through a graceful rolling restart ...", file=sys.stderr)
    table = ""
    try:
        table = kinds_table(every_api())
    except Exception as exc:
        failed += 1
        print(f"bench: every API x kind failed: {exc!r}", file=sys.stderr)
    print("grpc_pool bench --deploy: failed RPCs; ratio = (pool + 1) / (raw + 1)", file=out)
    print(format_table(rows), file=out)
    if table:
        print("\nFailed RPCs by API and kind, one graceful rolling restart of 3 backends"
              " (SIGTERM, grace 1 s), all clients at once, deadline 2 s:", file=out)  # fmt: skip
        print(table, file=out)
    print(f"({time.monotonic() - started:.0f} s)", file=out)
    return 1 if failed else 0
