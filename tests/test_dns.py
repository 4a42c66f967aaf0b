"""``dns://HOST[:PORT]/name:port``: the pool asks that DNS server (dnspython, the [dns]
extra), spreads over every A/AAAA record, follows record changes at the answer's TTL,
keeps the last good addresses when the server stops answering; and ``stats()`` / one
WARNING say why spreading is off when the pool cannot resolve a target itself.

The DNS server is a real dnsmasq (``grpc_pool.testing.deploy.dnsmasq``; the fixture
in tests/dnsmasq.py skips without it); backends are EchoServers on several loopback
addresses (Linux routes 127.0.0.0/8 to lo)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import grpc_pool
from grpc_pool._config.targets import NEEDS_DNS_EXTRA, dns_server_of, spread_off_reason
from grpc_pool._workers.resolver import _MIN_GAP, _next_in, default_resolve_ttl
from grpc_pool.testing import ECHO, PEER, EchoServer

from .conftest import Recorder, wait_until
from .dnsmasq import DnsServer, dns_server  # noqa: F401 (the fixture)

Make = Callable[..., grpc_pool.Pool]


@pytest.fixture
def backends() -> Iterator[Callable[[list[str]], list[EchoServer]]]:
    """EchoServers on the given loopback hosts, all on one port (the target's)."""
    servers: list[EchoServer] = []

    def make(hosts: list[str]) -> list[EchoServer]:
        port = servers[0].port if servers else 0
        made = []
        for host in hosts:
            server = EchoServer(port=port, host=host).start()
            port = server.port
            servers.append(server)
            made.append(server)
        return made

    yield make
    for server in servers:
        server.stop()


def ready_layout(pool: grpc_pool.Pool) -> dict[str, int]:
    """Ready channels per backend address, as the pool reports them."""
    return {b.address: b.ready for b in pool.stats().backends}


def spread_over(pool: grpc_pool.Pool, addresses: list[str]) -> bool:
    """The pool's backends are exactly ``addresses``, each with a ready channel, and
    every slot ready on one of them (no slot left on a removed address)."""
    found = ready_layout(pool)
    every = sum(found.values()) == pool.status().expected_size
    return sorted(found) == sorted(addresses) and all(found.values()) and every


def served_by(pool: grpc_pool.Pool, servers: list[EchoServer]) -> list[int]:
    """Distinct connections each server sees for RPCs over every ready channel."""
    for server in servers:
        with server._lock:
            server.peers.clear()
    for _ in range(4 * pool.status().current_size):
        pool.get_channel().unary_unary(PEER)(b"", timeout=5)
    return [len(s.peers) for s in servers]


def test_spreads_over_every_record_of_the_named_dns_server(
    dns_server: DnsServer,  # noqa: F811
    backends: Any,
    make_pool: Make,
) -> None:
    """dns://127.0.0.1:PORT/svc.test:P asks that server (getaddrinfo knows no svc.test):
    every A record gets slots, and every server serves connections."""
    servers = backends(["127.0.0.2", "127.0.0.3", "127.0.0.4"])
    dns_server.set_records({"svc.test": [s.host for s in servers]})
    pool = make_pool(dns_server.target("svc.test", servers[0].port), size=6)
    wait_until(lambda: spread_over(pool, [s.target for s in servers]), what="3 backends")
    assert pool.stats().spread_off_reason is None
    assert served_by(pool, servers) == [2, 2, 2]


def test_follows_a_record_change_at_the_ttl(
    dns_server: DnsServer,  # noqa: F811
    backends: Any,
    make_pool: Make,
) -> None:
    """One address added and one removed in DNS (the removed server still up, so no
    connection fails to trigger anything): the 1 s TTL brings the change well before
    resolve_interval (30 s); slots leave the removed address, RPCs keep working."""
    servers = backends(["127.0.0.2", "127.0.0.3", "127.0.0.4"])
    old, kept, new = servers[0], servers[1], servers[2]
    dns_server.set_records({"svc.test": [old.host, kept.host]})
    recorder = Recorder()
    target = dns_server.target("svc.test", old.port)
    pool = make_pool(target, size=4, resolve_interval=30.0, listeners=[recorder])
    wait_until(lambda: spread_over(pool, [old.target, kept.target]), what="first answer")
    dns_server.set_records({"svc.test": [kept.host, new.host]})
    wait_until(lambda: spread_over(pool, [kept.target, new.target]), what="the change")
    assert served_by(pool, servers) == [0, 2, 2]
    changes = [e for e in recorder.named("resolved") if e.error is None]
    assert (changes[-1].added, changes[-1].removed) == ((new.target,), (old.target,))


def test_keeps_the_last_good_addresses_when_the_dns_server_stops(
    dns_server: DnsServer,  # noqa: F811
    backends: Any,
    make_pool: Make,
) -> None:
    """The DNS server stops answering: the resolution fails (a ``resolved`` event with
    the error), the backends stay as they were and RPCs keep reaching them."""
    servers = backends(["127.0.0.2", "127.0.0.3"])
    dns_server.set_records({"svc.test": [s.host for s in servers]})
    recorder = Recorder()
    target = dns_server.target("svc.test", servers[0].port)
    pool = make_pool(target, size=4, listeners=[recorder])
    wait_until(lambda: spread_over(pool, [s.target for s in servers]), what="first answer")
    dns_server.stop()
    wait_until(lambda: any(e.error for e in recorder.named("resolved")), what="a failure")
    assert spread_over(pool, [s.target for s in servers])
    assert served_by(pool, servers) == [2, 2]


def test_an_aaaa_record_reaches_a_server_on_ipv6_loopback(
    dns_server: DnsServer,  # noqa: F811
    make_pool: Make,
) -> None:
    """An AAAA record (::1) is dialled as ipv6:[::1]:P and serves RPCs."""
    try:
        server = EchoServer(host="[::1]").start()
    except RuntimeError as exc:
        pytest.skip(f"no IPv6 loopback here: {exc}")
    try:
        dns_server.set_records({"v6.test": ["::1"]})
        pool = make_pool(dns_server.target("v6.test", server.port), size=2)
        try:
            wait_until(lambda: spread_over(pool, [f"[::1]:{server.port}"]), what="[::1]")
            assert pool.get_channel().unary_unary(ECHO)(b"x", timeout=5) == b"x"
        finally:
            pool.close(grace=0)  # before the server stops (no GOAWAY logged)
    finally:
        server.stop()


def test_resolving_asks_only_the_named_server(dns_server: DnsServer) -> None:  # noqa: F811
    """A, AAAA sorted IPv4 first with the smallest TTL; a name it does not know is a
    LookupError naming it (the system resolver is never asked)."""
    dns_server.set_records({"svc.test": ["::1", "127.0.0.3", "127.0.0.2"]})
    found = default_resolve_ttl(dns_server.target("svc.test", 7))
    assert found == (["127.0.0.2:7", "127.0.0.3:7", "[::1]:7"], 1.0)
    with pytest.raises(LookupError, match=r"nope\.test"):
        default_resolve_ttl(dns_server.target("nope.test", 7))


def test_without_dnspython_spreading_is_off_and_says_why_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, make_pool: Make
) -> None:
    """No dnspython (its import fails): a dns://server/ target goes to grpcio as given,
    stats() says why, and one WARNING names the extra. No DNS server needed."""
    monkeypatch.setitem(sys.modules, "dns", None)
    monkeypatch.setitem(sys.modules, "dns.resolver", None)
    target = "dns://127.0.0.1:1/svc.test:50051"
    assert spread_off_reason(grpc_pool.PoolConfig(target)) == NEEDS_DNS_EXTRA
    with caplog.at_level(logging.WARNING, logger="grpc_pool"):
        pool = make_pool(target, size=2)
        pool.stats()
        pool.stats()
    stats = pool.stats()
    assert stats.spread_off_reason == NEEDS_DNS_EXTRA and stats.backends == ()
    warned = [r.getMessage() for r in caplog.records if "not spreading" in r.getMessage()]
    assert len(warned) == 1 and "pip install grpc-pool[dns]" in warned[0]


def test_a_scheme_the_pool_does_not_resolve_says_so_in_stats(
    caplog: pytest.LogCaptureFixture, make_pool: Make, server: EchoServer
) -> None:
    """A unix: socket (a scheme grpcio resolves itself): the reason in stats(), no
    WARNING (nothing to spread); one IP address: its own reason."""
    with caplog.at_level(logging.WARNING, logger="grpc_pool"):
        unix = make_pool("unix:/tmp/grpc-pool-test-none.sock", size=1)
    assert unix.stats().spread_off_reason == "scheme 'unix' is not resolved by the pool"
    assert not [r for r in caplog.records if "not spreading" in r.getMessage()]
    assert make_pool(server.target, size=1).stats().spread_off_reason == "one IP address"


def test_bad_input_is_still_refused_at_construction() -> None:
    """A DNS server port out of range or a dns:// without a name: InvalidConfig naming
    the target, as before (nothing started)."""
    for target in ("dns://127.0.0.1:99999/svc.test:1", "dns://127.0.0.1:53"):
        with pytest.raises(grpc_pool.InvalidConfig, match="target="):
            grpc_pool.PoolConfig(target)


@pytest.mark.parametrize(
    ("config", "reason"),
    [
        (grpc_pool.PoolConfig("svc.test:1", spread="off"), "spread='off'"),
        (grpc_pool.PoolConfig(["a.test:1", "b.test:1"]), "a list of targets"),
        (
            grpc_pool.PoolConfig("svc.test:1", options=[("grpc.lb_policy_name", "x")]),
            "grpcio's load balancing chosen in options",
        ),
        (grpc_pool.PoolConfig("dns://127.0.0.1:53/10.0.0.1:1"), "one IP address"),
        (grpc_pool.PoolConfig("localhost:1"), "localhost"),
        (grpc_pool.PoolConfig("xds:///orders"), "scheme 'xds' is not resolved by the pool"),
        (grpc_pool.PoolConfig("dns://[::1]:53/svc.test:1"), None),
        (grpc_pool.PoolConfig("dns:///svc.test:1"), None),
    ],
)
def test_spread_off_reasons(config: grpc_pool.PoolConfig, reason: str | None) -> None:
    """Each reason spreading is off, None when the pool spreads."""
    found = spread_off_reason(config)
    assert found == reason if reason is None else (found or "").startswith(reason)


def test_dns_server_of_and_the_ttl_rule() -> None:
    """The authority of dns://HOST[:PORT]/ (53 by default), none for dns:///; the next
    resolution: the interval, sooner by the TTL, never under the minimum gap."""
    assert dns_server_of("dns://10.0.0.53/svc.test:1") == ("10.0.0.53", 53)
    assert dns_server_of("DNS://[::1]:8600/svc.test:1") == ("::1", 8600)
    assert dns_server_of("dns:///svc.test:1") is None
    assert dns_server_of("svc.test:1") is None
    assert _next_in(30.0, None) == 30.0
    assert _next_in(30.0, 5.0) == 5.0
    assert _next_in(30.0, 0.0) == _MIN_GAP
    assert _next_in(2.0, 300.0) == 2.0
