"""6. Deploys: failed RPCs through a graceful rolling restart and a rolling update
behind DNS, the pool against a raw grpcio ``round_robin`` channel with a
``retryPolicy`` (and plain ``round_robin``) in the same run; and the failed RPCs per
API and kind (``python -m grpc_pool bench --deploy`` runs the same, outside pytest).

The clients run concurrently, each in its own process, against the same events and
the same backends (child processes, grpc_pool.testing.deploy). The ratio is
(pool failures + 1) / (raw round_robin + retryPolicy failures + 1): below 1, the
pool failed fewer RPCs. pytest-benchmark times the whole scenario once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from grpc_pool.cli.bench import core
from grpc_pool.cli.bench.deploy import deploy_row, every_api, kinds_table
from grpc_pool.testing.deploy import DnsUnavailable, rolling_restart, rolling_update

Report = Callable[[list[core.Row]], None]
_row = deploy_row


def test_graceful_rolling_restart(benchmark: Any, report: Report) -> None:
    """Three backends restarted one after another (SIGTERM, grace 1 s, down 0.5 s)
    under 6 threads of unary RPCs per client."""
    rows = benchmark.pedantic(
        lambda: [_row("deploy.restart", rolling_restart)], rounds=1, iterations=1
    )
    report(rows)


def test_rolling_update_behind_dns(benchmark: Any, report: Report) -> None:
    """Each backend replaced by a new one on a new loopback address behind DNS
    (grpc_pool/testing/deploy/dnsmasq.py, TTL 1 s), target ``dns://127.0.0.1:PORT/svc.test:PORT``.
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


def test_every_api_and_kind(benchmark: Any) -> None:
    """One graceful rolling restart under every API of the pool (insecure_channel(),
    pool.channel, get_channel(), stub()) and raw round_robin + retryPolicy at once,
    a thread per kind: the failed RPCs per kind and client, printed (``-s``)."""
    result = benchmark.pedantic(every_api, rounds=1, iterations=1)
    print(kinds_table(result))
