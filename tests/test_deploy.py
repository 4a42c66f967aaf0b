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

from grpc_pool.testing.deploy import (
    APIS,
    HOWS,
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
def every_api() -> Iterator[ScenarioResult]:
    """One graceful rolling restart of three backends under load from five clients
    at once, each in its own process with a thread per kind (blocking unary,
    with_call, future, server, client and bidi streaming; deadline 2 s): the
    pool through ``insecure_channel()``, ``pool.channel``, ``get_channel()`` and
    ``stub()``, and raw grpcio ``round_robin`` + ``retryPolicy`` beside them."""
    result = run_scenario(
        rolling_restart,
        (*APIS, "rr_retry"),
        title="graceful rolling restart, every API x kind",
        threads=len(HOWS),
        kinds=HOWS,
    )
    result.print()
    yield result


@pytest.mark.parametrize("how", HOWS)
@pytest.mark.parametrize("api", APIS)
def test_every_api_and_kind_through_a_graceful_restart(
    every_api: ScenarioResult, api: str, how: str
) -> None:
    """Through each API and for each kind, a graceful rolling restart fails no RPC
    UNAVAILABLE and none that never reached a server (the one retry sends those
    again on another channel)."""
    client = every_api[api]
    assert client.error is None, client.error
    mine = client.of_kind(how)
    assert mine.ok > 0
    unavailable = mine.unavailable()
    assert not unavailable, f"{len(unavailable)} UNAVAILABLE:\n{_show(unavailable)}"
    preventable = mine.preventable()
    assert not preventable, f"{len(preventable)} never reached a server:\n{_show(preventable)}"


@pytest.mark.parametrize("api", APIS)
def test_no_api_fails_more_than_raw_round_robin_with_retry(
    every_api: ScenarioResult, api: str
) -> None:
    """Each API of the pool fails no more RPCs than raw ``round_robin`` +
    ``retryPolicy`` in the same run, counting everything but the CANCELLED that a
    grpcio server's stop() deals to calls it had received and not yet handed to its
    application (those reached no handler, hit both clients alike, and no client
    can tell them from a cancellation after the handler ran: docs/reliability.md)."""
    pool, raw = every_api[api], every_api["rr_retry"]
    assert raw.error is None, raw.error
    ours = [f for f in pool.failures if f not in pool.shutdown_cancelled()]
    theirs = [f for f in raw.failures if f not in raw.shutdown_cancelled()]
    assert len(ours) <= len(theirs), "\n".join(pool.lines() + raw.lines())


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
    """A rolling update behind a real DNS server (dnsmasq): for each of three
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
