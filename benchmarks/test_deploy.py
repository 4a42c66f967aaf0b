"""6. Deploys: failed RPCs through a graceful rolling restart and a rolling update
behind DNS, the pool against a raw grpcio ``round_robin`` channel with a
``retryPolicy`` (and plain ``round_robin``) in the same run.

The clients run concurrently, each in its own process, against the same events and
the same backends (child processes, tests/deploy). The ratio is
(pool failures + 1) / (raw round_robin + retryPolicy failures + 1): below 1, the
pool failed fewer RPCs. pytest-benchmark times the whole scenario once.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from grpc_pool.cli.bench import core
from tests.deploy import ClientResult, DnsUnavailable, rolling_restart, rolling_update, run_scenario

Report = Callable[[list[core.Row]], None]
CLIENTS = ("pool", "rr_retry", "rr")


def _kinds(client: ClientResult) -> str:
    short: Counter[str] = Counter()
    for (code, details), n in client.by_kind().items():
        if "failed to connect" in details or "connections to all backends failing" in details:
            short["not connected"] += n
        elif code == "CANCELLED":
            short["CANCELLED"] += n
        else:
            short[code] += n
    return ", ".join(f"{k} {v}" for k, v in short.most_common()) or "none"


def _row(key: str, event: Callable[..., None], **options: Any) -> core.Row:
    result = run_scenario(event, CLIENTS, title=core.DEPLOY_ROWS[key], threads=6, **options)
    result.print()
    pool, raw, rr = result["pool"], result["rr_retry"], result["rr"]
    for client in (pool, raw, rr):
        if client.error:
            raise RuntimeError(f"{client.name}: {client.error}")
    return core.Row(
        key,
        (pool.failed + 1) / (raw.failed + 1),
        f"{pool.failed} failed of {pool.ok + pool.failed} ({_kinds(pool)})",
        f"rr+retryPolicy {raw.failed} failed of {raw.ok + raw.failed} ({_kinds(raw)});"
        f" rr {rr.failed} failed of {rr.ok + rr.failed} ({_kinds(rr)})",
    )


def test_graceful_rolling_restart(benchmark: Any, report: Report) -> None:
    """Three backends restarted one after another (SIGTERM, grace 1 s, down 0.5 s)
    under 6 threads of unary RPCs per client."""
    rows = benchmark.pedantic(
        lambda: [_row("deploy.restart", rolling_restart)], rounds=1, iterations=1
    )
    report(rows)


def test_rolling_update_behind_dns(benchmark: Any, report: Report) -> None:
    """Each backend replaced by a new one on a new loopback address behind DNS
    (tests/dnsmasq.py, TTL 1 s), target ``dns://127.0.0.1:PORT/svc.test:PORT``.
    The raw channels re-resolve at most every 0.5 s
    (``grpc.dns_min_time_between_resolutions_ms``; grpcio's default is 30 s)."""
    try:
        rows = benchmark.pedantic(
            lambda: [_row("deploy.update", rolling_update, dns=True)], rounds=1, iterations=1
        )
    except DnsUnavailable as exc:
        print(f"SKIP: {exc}")
        pytest.skip(str(exc))
    report(rows)
