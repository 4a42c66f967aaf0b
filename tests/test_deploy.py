"""Deploys under load: what the pool promises through rolling restarts, crashes,
server-side connection ageing and rolling updates behind DNS (docs/reliability.md,
"Deploys").

Real backends in child processes (tests/deploy/backend.py), each client in a child
process of its own, loopback only. Each backend records the request ids it received,
so every failed RPC is known to have reached a server or not. Every run prints, per
client, the RPCs that succeeded and the failures by (code, details) (``pytest -s``).

The contract:
- graceful restart, max connection age, rolling update: no UNAVAILABLE, and no
  failure of an RPC that never reached a server; CANCELLED at a server's shutdown (it
  had accepted the RPC) is counted and printed, not asserted;
- abrupt kill: only RPCs in flight on the killed backend fail (each failed RPC
  reached it, or failed on the broken connection), and none with an opt-in
  ``retry=grpc_pool.RetryPolicy(...)`` on the (idempotent) echo methods.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.deploy import (
    KINDS,
    DnsUnavailable,
    ScenarioResult,
    kill_one,
    rolling_restart,
    rolling_update,
    run_scenario,
    steady,
)

pytestmark = [pytest.mark.deploy, pytest.mark.timeout(90)]


def _show(failures: list[dict[str, object]]) -> str:
    return "\n".join(str(f) for f in failures[:10])


def assert_graceful(result: ScenarioResult, name: str = "pool") -> None:
    client = result[name]
    assert client.error is None, client.error
    assert client.ok > 0
    unavailable = client.unavailable()
    assert not unavailable, f"{len(unavailable)} UNAVAILABLE:\n{_show(unavailable)}"
    preventable = client.preventable()
    assert not preventable, f"{len(preventable)} never reached a server:\n{_show(preventable)}"


def test_graceful_rolling_restart() -> None:
    """Three backends restarted one after another (SIGTERM: server.stop(1.0), down
    0.5 s) under 6 threads of unary RPCs: no UNAVAILABLE, no RPC failed without
    reaching a server (CANCELLED at a shutdown is printed, not asserted)."""
    result = run_scenario(rolling_restart, ("pool",), title="graceful rolling restart")
    result.print()
    assert_graceful(result)


def test_all_four_rpc_kinds_through_a_graceful_restart() -> None:
    """Unary, server-streaming, client-streaming and bidi RPCs (200 ms each on the
    server, within the 1 s grace) through ``pool.channel`` while the backends restart
    gracefully: streams started before the GOAWAY finish within the grace, new ones
    are not failed (no UNAVAILABLE, none failed without reaching a server)."""
    result = run_scenario(
        rolling_restart,
        ("pool",),
        title="graceful rolling restart, four RPC kinds",
        threads=8,
        kinds=KINDS,
        delay_ms=200,
    )
    result.print()
    assert_graceful(result)


def test_max_connection_age() -> None:
    """Backends with ``grpc.max_connection_age_ms`` 1000 (grace 1000 ms) under load
    for 4 s: every connection is aged out by a GOAWAY several times, and no RPC fails
    UNAVAILABLE or without reaching a server."""
    result = run_scenario(
        steady,
        ("pool",),
        title="max connection age 1 s",
        backend_options={"max_age_ms": 1000, "max_age_grace_ms": 1000},
    )
    result.print()
    assert_graceful(result)


@pytest.fixture(scope="module")
def abrupt() -> Iterator[ScenarioResult]:
    """One SIGKILL of one of three backends under load, the pool and the pool with a
    RetryPolicy as two clients against the same event."""
    clients = ("pool", "pool_retry")
    result = run_scenario(kill_one, clients, title="abrupt kill (SIGKILL) of 1 of 3 backends")
    result.print()
    yield result


def assert_only_in_flight_failed(result: ScenarioResult, name: str) -> None:
    client = result[name]
    assert client.error is None, client.error
    assert client.ok > 0
    others = client.not_explained_by(result.killed)
    assert not others, (
        f"{len(others)} of {client.failed} failures were not in flight on the killed "
        f"backend:\n{_show(others)}"
    )


def test_abrupt_kill_fails_only_rpcs_in_flight_on_it(abrupt: ScenarioResult) -> None:
    """SIGKILL of one backend of three: a failed RPC had reached the killed backend
    (its record) or failed on the broken connection; none failed to connect."""
    assert_only_in_flight_failed(abrupt, "pool")


def test_abrupt_kill_with_a_retry_policy_fails_nothing(abrupt: ScenarioResult) -> None:
    """With ``retry=grpc_pool.RetryPolicy(...)`` on the idempotent echo methods, the
    RPCs in flight on the killed backend are sent again: none fails."""
    if "pool_retry" not in abrupt.clients:
        reason = "grpc_pool.RetryPolicy is not there yet (branch i18a)"
        print(f"SKIP: {reason}")
        pytest.skip(reason)
    client = abrupt["pool_retry"]
    assert client.error is None, client.error
    assert client.failed == 0, "\n".join(client.lines())


def test_kill_with_only_two_backends() -> None:
    """SIGKILL of one of two backends under load (half the pool's connections at
    once): only RPCs in flight on the killed backend fail."""
    result = run_scenario(kill_one, ("pool",), title="abrupt kill of 1 of 2 backends", backends=2)
    result.print()
    assert_only_in_flight_failed(result, "pool")


def test_rolling_update_behind_dns() -> None:
    """A rolling update behind a real DNS server (tests/dnsmasq.py): for each of three
    backends, a new one on a new loopback address is added to DNS, the old one removed,
    then stopped with SIGTERM 1 s later (TTL 1 s). Target
    ``dns://127.0.0.1:DNSPORT/svc.test:PORT``: no UNAVAILABLE, no RPC failed without
    reaching a server."""
    try:
        result = run_scenario(
            rolling_update, ("pool",), title="rolling update behind DNS", dns=True
        )
    except DnsUnavailable as exc:
        print(f"SKIP: {exc}")
        pytest.skip(str(exc))
    result.print()
    assert_graceful(result)
