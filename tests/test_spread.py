"""Spreading over the backends a target resolves to (issue 12), on 127.0.0.1-127.0.0.4:
Linux routes all of 127/8 to loopback, so four servers share one port on four addresses
and each counts the connections it serves (server-side peers)."""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest

import grpc_pool
from grpc_pool._config.targets import dial_target, plan, split_host_port
from grpc_pool._workers.resolver import default_resolve
from grpc_pool._writer.placement import counts
from grpc_pool.testing.echo import ECHO, PEER, SLOW, EchoServer

from .conftest import Recorder, self_signed, wait_until

HOSTS = ("127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4")


@pytest.fixture
def backends() -> Iterator[list[EchoServer]]:
    """Four echo servers on one port, one per loopback address."""
    first = EchoServer(host=HOSTS[0]).start()
    servers = [first] + [EchoServer(host=h, port=first.port).start() for h in HOSTS[1:]]
    yield servers
    for server in servers:
        server.stop()


def addresses(servers: list[EchoServer]) -> list[str]:
    return [s.target for s in servers]


def layout(pool: grpc_pool.Pool) -> dict[str, tuple[int, int]]:
    """(slots, ready) per backend address, as the pool reports them."""
    return {b.address: (b.slots, b.ready) for b in pool.stats().backends}


def connections(pool: grpc_pool.Pool, servers: list[EchoServer]) -> list[int]:
    """Connections each server serves now: forget what they saw, then send every
    ready channel (the round robin cycles over all of them) a few RPCs."""
    for server in servers:
        with server._lock:
            server.peers.clear()
    ready = pool.status().current_size
    for _ in range(4 * ready):
        pool.get_channel().unary_unary(PEER)(b"", timeout=5)
    return [len(s.peers) for s in servers]


class Answer:
    """A resolver whose answer the test changes; counts calls per answer."""

    def __init__(self, answer: list[str]) -> None:
        self.answer = answer
        self.error: Exception | None = None
        self.calls: Counter[tuple[str, ...]] = Counter()
        self._lock = threading.Lock()

    def __call__(self, target: str) -> list[str]:
        with self._lock:
            if self.error is not None:
                raise self.error
            self.calls[tuple(self.answer)] += 1
            return list(self.answer)


# -- targets -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "authority", "static"),
    [
        ("dns:///svc.test:50051", "svc.test:50051", None),
        ("dns://8.8.8.8/svc.test:50051", "svc.test:50051", None),
        ("dns:svc.test:50051", "svc.test:50051", None),
        ("svc.test:50051", "svc.test:50051", None),
        ("svc.test", "svc.test", None),
        ("ipv4:127.0.0.1:1,127.0.0.2:1", None, ("127.0.0.1:1", "127.0.0.2:1")),
        ("ipv6:[::1]:1,[::2]:2", None, ("[::1]:1", "[::2]:2")),
    ],
)
def test_targets_the_pool_spreads(target: str, authority: str | None, static: Any) -> None:
    """Names spread with the name kept as authority; address lists are parsed without I/O."""
    p = plan(grpc_pool.PoolConfig(target))
    assert p is not None
    assert (p.authority, p.static) == (authority, static)


@pytest.mark.parametrize(
    "target",
    [
        *("unix:/tmp/sock", "xds:///svc", "127.0.0.1:1", "[::1]:1"),
        *("localhost:50051", "dns:///localhost:1", "api.localhost:1", "LOCALHOST."),
    ],
)
def test_targets_that_go_to_grpcio_unchanged(target: str) -> None:
    """unix:, xds:, a single IP and localhost (one machine: 127.0.0.1 and ::1 are one
    server) are not spread (grpcio gets them as given); with a resolver, any target is."""
    assert plan(grpc_pool.PoolConfig(target)) is None
    assert plan(grpc_pool.PoolConfig(target, resolver=lambda t: ["127.0.0.1:1"])) is not None


@pytest.mark.parametrize(
    "target", ["custom:thing", "ipv4:127.0.0.1:1,nonsense:1", "ipv6:127.0.0.1:1", "[::1:1"]
)
def test_malformed_targets_are_refused_unless_a_resolver_reads_them(target: str) -> None:
    """Unknown schemes and malformed lists are refused when the config is made (they
    went to grpcio unchanged before, and failed at every connect); with a resolver the
    target is the resolver's, and it spreads."""
    with pytest.raises(grpc_pool.InvalidConfig, match=r"^target="):
        grpc_pool.PoolConfig(target)
    assert plan(grpc_pool.PoolConfig(target, resolver=lambda t: ["127.0.0.1:1"])) is not None


def test_spread_off_and_target_lists_keep_todays_behaviour() -> None:
    """spread="off", a list of targets, or grpcio's balancing chosen in options: no
    plan, the targets go to grpcio as given."""
    assert plan(grpc_pool.PoolConfig("ipv4:127.0.0.1:1,127.0.0.2:1", spread="off")) is None
    assert plan(grpc_pool.PoolConfig(["svc-a.test:1", "svc-b.test:1"])) is None
    for option in [*_service_config({"round_robin": {}}), ("grpc.lb_policy_name", "x")]:
        assert plan(grpc_pool.PoolConfig("svc.test:1", options=[option])) is None


def test_default_resolver_and_dial_targets() -> None:
    """getaddrinfo answers, deduplicated and sorted; an IP dials as ipv4:/ipv6:."""
    assert default_resolve("dns:///127.0.0.1:7") == ["127.0.0.1:7"]
    assert default_resolve("ipv4:127.0.0.2:7,127.0.0.1:7,127.0.0.2:7") == [
        "127.0.0.2:7",
        "127.0.0.1:7",
    ]
    found = default_resolve("localhost:7")
    assert found and found == sorted(set(found), key=found.index)
    assert dial_target("127.0.0.1:7") == "ipv4:127.0.0.1:7"
    assert dial_target("[::1]:7") == "ipv6:[::1]:7"
    assert dial_target("backend.test:7") == "backend.test:7"
    assert split_host_port("[::1]") == ("::1", "443")


@pytest.mark.parametrize(
    ("field", "value"), [("spread", "even"), ("resolve_interval", -1.0), ("resolver", 3)]
)
def test_bad_spread_options_are_refused(field: str, value: object) -> None:
    """Each new field is checked at construction and named in the error."""
    with pytest.raises(grpc_pool.InvalidConfig, match=field):
        grpc_pool.PoolConfig("svc.test:1", **{field: value})


# -- against servers ---------------------------------------------------------------


def test_ipv4_list_of_three_pool_of_six_is_two_two_two(
    make_pool: Callable[..., grpc_pool.Pool], backends: list[EchoServer]
) -> None:
    """An ipv4: list of 3 and 6 slots: each server serves exactly 2 connections (by
    its own count of peers), and the stats say so per backend and per slot."""
    three = backends[:3]
    target = "ipv4:" + ",".join(addresses(three))
    pool = make_pool(target, size=6)
    pool.wait_ready(timeout=10, min_ready=6)
    assert connections(pool, three) == [2, 2, 2]
    assert layout(pool) == {a: (2, 2) for a in addresses(three)}
    assert Counter(s.address for s in pool.stats().slots) == dict.fromkeys(addresses(three), 2)
    assert pool.status().state == "healthy"


def _service_config(policy: dict[str, Any]) -> list[tuple[str, str]]:
    return [("grpc.service_config", json.dumps({"loadBalancingConfig": [policy]}))]


def test_the_table_in_docs_scaling(
    make_pool: Callable[..., grpc_pool.Pool], backends: list[EchoServer]
) -> None:
    """docs/scaling.md "Spreading over backends", measured: an ipv4: list of 3, a pool of
    6, connections per backend by server-side peers. pick_first puts all 6 on the first
    address, round_robin opens 18, shuffleAddressList is random, balanced is 2/2/2
    (printed with ``pytest -s``)."""
    three = backends[:3]
    target = "ipv4:" + ",".join(addresses(three))
    rows = {
        "pick_first": dict(spread="off"),
        "shuffleAddressList": dict(
            spread="off", options=_service_config({"pick_first": {"shuffleAddressList": True}})
        ),
        "round_robin": dict(spread="off", options=_service_config({"round_robin": {}})),
        "balanced": dict(spread="balanced"),
    }
    measured: dict[str, list[int]] = {}
    pools: dict[str, grpc_pool.Pool] = {}
    for name, options in rows.items():
        pool = pools[name] = make_pool(target, size=6, **options)
        pool.wait_ready(timeout=10, min_ready=6)
        if name == "round_robin":  # each channel opens its subchannels as RPCs go
            wait_until(lambda p=pool: sum(connections(p, three)) == 18, what="18 connections")
        measured[name] = connections(pool, three)
        print(f"{name}: {measured[name]}")
    assert measured["pick_first"] == [6, 0, 0]
    assert sum(measured["shuffleAddressList"]) == 6
    assert measured["round_robin"] == [6, 6, 6]
    assert measured["balanced"] == [2, 2, 2]
    # A dead backend: invisible under round_robin (every channel still has a live
    # subchannel), two slots down in the balanced pool.
    three[2].stop()
    balanced, round_robin = pools["balanced"], pools["round_robin"]
    wait_until(lambda: balanced.status().current_size == 4, what="balanced pool degraded")
    assert layout(balanced)[three[2].target] == (2, 0)
    assert round_robin.status() == grpc_pool.PoolStatus(6, 6, "healthy")
    print(f"one backend dead: round_robin {round_robin!r}, balanced {balanced!r}")


def test_spread_off_puts_every_channel_on_the_first_address(
    make_pool: Callable[..., grpc_pool.Pool], backends: list[EchoServer]
) -> None:
    """spread="off" is today's behaviour: grpcio's pick_first takes the first address."""
    three = backends[:3]
    pool = make_pool("ipv4:" + ",".join(addresses(three)), size=6, spread="off")
    pool.wait_ready(timeout=10, min_ready=6)
    assert connections(pool, three) == [6, 0, 0]
    assert pool.stats().backends == ()
    assert {s.address for s in pool.stats().slots} == {None}


def test_a_new_backend_gets_its_slots_at_the_first_resolution(
    make_pool: Callable[..., grpc_pool.Pool], backends: list[EchoServer]
) -> None:
    """A resolver whose answer gains a 4th address: the first resolution after the change
    moves one slot to it, or two when it ranks among the pool's first two (2/2/1/1 by
    server-side peers either way), the resolver thread is named for the pool, and a
    ResolvedEvent names what was added."""
    answer = Answer(addresses(backends[:3]))
    recorder = Recorder()
    pool = make_pool(
        "svc.test:1", size=6, resolver=answer, resolve_interval=0.2, listeners=[recorder]
    )
    pool.wait_ready(timeout=10, min_ready=6)
    assert f"grpc_pool-resolver-{pool.name}" in {t.name for t in threading.enumerate()}
    wait_until(lambda: all(r == (2, 2) for r in layout(pool).values()), what="2/2/2")
    answer.answer = addresses(backends)
    wait_until(
        lambda: (
            sorted(layout(pool).values()) == [(1, 1), (1, 1), (2, 2), (2, 2)]
            and pool.status().current_size == 6
        ),
        what="2/2/1/1 ready",
    )
    assert sorted(connections(pool, backends)) == [1, 1, 2, 2]
    # The change was followed by the first resolution that saw it.
    changes = [e for e in recorder.named("resolved") if e.added]
    assert changes[-1].added == (backends[3].target,)
    assert answer.calls[tuple(addresses(backends))] >= 1
    first_seen = [e for e in changes if backends[3].target in e.addresses]
    assert len(first_seen) == 1


def test_a_removed_backend_moves_its_slots_without_failing_an_rpc(
    make_pool: Callable[..., grpc_pool.Pool], backends: list[EchoServer]
) -> None:
    """Under load, an address leaves the answer: its slots move to the others warm
    (the new channel connects before the old one leaves the rotation, then drains),
    no RPC fails, and the pool never has fewer ready channels than slots on the way."""
    three = backends[:3]
    answer = Answer(addresses(three))
    pool = make_pool("svc.test:1", size=6, resolver=answer, resolve_interval=0.2)
    pool.wait_ready(timeout=10, min_ready=6)
    stop = threading.Event()
    failures: list[BaseException] = []
    calls = Counter[str]()
    least_ready = [6]

    def load() -> None:
        while not stop.is_set():
            try:
                pool.get_channel().unary_unary(SLOW)(b"0.02", timeout=5)
                calls["ok"] += 1
            except Exception as exc:
                failures.append(exc)
            least_ready[0] = min(least_ready[0], pool.status().current_size)

    threads = [threading.Thread(target=load) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        wait_until(lambda: calls["ok"] > 20, what="load running")
        answer.answer = addresses([three[0], three[2]])
        wait_until(
            lambda: layout(pool) == {three[0].target: (3, 3), three[2].target: (3, 3)},
            what="3/3 on the remaining backends",
        )
        done = calls["ok"]
        wait_until(lambda: calls["ok"] > done + 20, what="more load after the move")
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)
    assert not failures, failures[:3]
    assert least_ready[0] == 6
    assert connections(pool, three) == [3, 0, 3]


def test_a_dead_backend_degrades_the_pool_until_it_leaves_the_answer(
    make_pool: Callable[..., grpc_pool.Pool], backends: list[EchoServer]
) -> None:
    """A backend that stops serving shows: its slots are not ready, the pool is
    degraded and its BackendStats says 0 ready; once the resolver drops it, its slots
    move and the pool is healthy again."""
    three = backends[:3]
    answer = Answer(addresses(three))
    pool = make_pool("svc.test:1", size=6, resolver=answer, resolve_interval=0.2)
    pool.wait_ready(timeout=10, min_ready=6)
    three[1].stop()
    wait_until(
        lambda: layout(pool)[three[1].target] == (2, 0) and pool.status().current_size == 4,
        what="dead backend out of rotation",
    )
    assert pool.status().state == "degraded"
    answer.answer = addresses([three[0], three[2]])
    wait_until(lambda: pool.status().state == "healthy", what="healthy again")
    assert layout(pool) == {three[0].target: (3, 3), three[2].target: (3, 3)}


def test_a_failed_connection_resolves_again_before_the_interval(
    make_pool: Callable[..., grpc_pool.Pool], backends: list[EchoServer]
) -> None:
    """A backend goes away (stopped, and replaced in the answer) with a 60 s interval:
    the failed connections trigger a resolution, and the slots move to the new one."""
    answer = Answer(addresses(backends[:2]))
    pool = make_pool("svc.test:1", size=4, resolver=answer, resolve_interval=60.0)
    pool.wait_ready(timeout=10, min_ready=4)
    answer.answer = addresses([backends[0], backends[2]])
    backends[1].stop()
    wait_until(
        lambda: layout(pool) == dict.fromkeys(addresses([backends[0], backends[2]]), (2, 2)),
        what="slots on the new answer",
    )
    assert sum(answer.calls.values()) == 2


def test_a_failing_resolver_keeps_the_last_good_addresses(
    make_pool: Callable[..., grpc_pool.Pool], backends: list[EchoServer]
) -> None:
    """A resolver that raises, then answers nothing: each failure is an event with the
    error and the addresses kept; no slot moves and the pool stays full."""
    two = backends[:2]
    answer = Answer(addresses(two))
    recorder = Recorder()
    pool = make_pool(
        "svc.test:1", size=4, resolver=answer, resolve_interval=0.1, listeners=[recorder]
    )
    pool.wait_ready(timeout=10, min_ready=4)
    answer.error = OSError("discovery is down")
    wait_until(lambda: any(e.error for e in recorder.named("resolved")), what="error event")
    answer.error, answer.answer = None, []
    wait_until(
        lambda: any(e.error == "resolved to no address" for e in recorder.named("resolved")),
        what="empty answer event",
    )
    failed = [e for e in recorder.named("resolved") if e.error]
    assert "OSError: discovery is down" in failed[0].error
    assert all(e.addresses == tuple(addresses(two)) and not e.removed for e in failed)
    assert layout(pool) == {a: (2, 2) for a in addresses(two)}
    assert pool.status().current_size == 4


def test_a_resolver_failing_from_the_start_connects_to_the_target_as_given(
    make_pool: Callable[..., grpc_pool.Pool], server: EchoServer
) -> None:
    """With no good answer yet, slots do not wait forever: they dial the target as given."""

    def broken(target: str) -> list[str]:
        raise RuntimeError("no discovery")

    pool = make_pool(server.target, size=2, resolver=broken, resolve_interval=5.0)
    pool.wait_ready(timeout=10, min_ready=2)
    assert {s.address for s in pool.stats().slots} == {None}
    pool.get_channel().unary_unary(ECHO)(b"x", timeout=5)


def test_resizing_keeps_the_slots_balanced(
    make_pool: Callable[..., grpc_pool.Pool], backends: list[EchoServer]
) -> None:
    """Scale down (whichever slots are stopped) and up: the slots end balanced over
    the addresses again, every one ready."""
    two = backends[:2]
    pool = make_pool("ipv4:" + ",".join(addresses(two)), size=4)
    pool.wait_ready(timeout=10, min_ready=4)
    pool.scale_down(2)
    wait_until(lambda: layout(pool) == dict.fromkeys(addresses(two), (1, 1)), what="1/1")
    pool.scale_up(3)
    wait_until(lambda: sorted(layout(pool).values()) == [(2, 2), (3, 3)], what="3/2 after scale up")
    assert sorted(connections(pool, two)) == [2, 3]


def test_max_age_refresh_keeps_each_slot_on_its_address(
    make_pool: Callable[..., grpc_pool.Pool], backends: list[EchoServer]
) -> None:
    """A max-age refresh replaces a slot's channel with one to the same address."""
    two = backends[:2]
    pool = make_pool("ipv4:" + ",".join(addresses(two)), size=2, max_connection_age=0.3)
    pool.wait_ready(timeout=10, min_ready=2)
    before = {s.slot: s.address for s in pool.stats().slots}
    wait_until(lambda: pool.stats().connects >= 6, what="a few refreshes")
    assert {s.slot: s.address for s in pool.stats().slots} == before
    wait_until(lambda: layout(pool) == dict.fromkeys(addresses(two), (1, 1)), what="1/1")


def test_resolve_interval_zero_resolves_once(
    make_pool: Callable[..., grpc_pool.Pool], backends: list[EchoServer]
) -> None:
    """resolve_interval=0: one resolution at start, none after, even after failures;
    the resolver thread has ended."""
    answer = Answer(addresses(backends[:2]))
    pool = make_pool("svc.test:1", size=2, resolver=answer, resolve_interval=0)
    pool.wait_ready(timeout=10, min_ready=2)
    wait_until(
        lambda: f"grpc_pool-resolver-{pool.name}" not in {t.name for t in threading.enumerate()},
        what="the resolver thread to end",
    )
    backends[0].stop()
    wait_until(lambda: pool.stats().connect_failures > 0, what="a failed connection")
    assert sum(answer.calls.values()) == 1


# -- TLS -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, bytes]:
    """A self-signed certificate for svc.test (the openssl CLI)."""
    return self_signed(tmp_path_factory.mktemp("tls"), "/CN=svc.test", "DNS:svc.test")


@pytest.fixture
def tls_backends(certificate: tuple[bytes, bytes]) -> Iterator[tuple[int, list[set[str]]]]:
    """Two TLS servers for svc.test on 127.0.0.1 and 127.0.0.2, one port; each records
    its peers."""
    key, cert = certificate
    peers: list[set[str]] = [set(), set()]
    servers: list[grpc.Server] = []
    port = 0
    for i, host in enumerate(HOSTS[:2]):

        def peer(request: bytes, context: grpc.ServicerContext, seen: set[str] = peers[i]) -> bytes:
            seen.add(context.peer())
            return request

        handler = grpc.method_handlers_generic_handler(
            "grpc_pool.demo.Echo", {"Peer": grpc.unary_unary_rpc_method_handler(peer)}
        )
        server = grpc.server(futures.ThreadPoolExecutor(4))
        server.add_generic_rpc_handlers((handler,))
        port = server.add_secure_port(f"{host}:{port}", grpc.ssl_server_credentials([(key, cert)]))
        server.start()
        servers.append(server)
    yield port, peers
    for server in servers:
        server.stop(None).wait(10)


def test_tls_verifies_the_original_name_on_every_address(
    make_pool: Callable[..., grpc_pool.Pool],
    certificate: tuple[bytes, bytes],
    tls_backends: tuple[int, list[set[str]]],
) -> None:
    """A name that resolver= maps to two loopback addresses: each slot dials an IP but
    keeps the name as authority, so the certificate for svc.test verifies; the same
    servers under a wrong name fail verification and no channel becomes ready."""
    port, peers = tls_backends
    two = [f"{h}:{port}" for h in HOSTS[:2]]
    credentials = grpc.ssl_channel_credentials(root_certificates=certificate[1])
    options: dict[str, Any] = {"insecure": False, "credentials": credentials}
    pool = make_pool(f"svc.test:{port}", size=4, resolver=lambda t: two, **options)
    pool.wait_ready(timeout=10, min_ready=4)
    for _ in range(8):
        pool.get_channel().unary_unary(PEER)(b"", timeout=5)
    assert [len(p) for p in peers] == [2, 2]
    assert layout(pool) == {a: (2, 2) for a in two}

    wrong = make_pool(f"wrong.test:{port}", size=2, resolver=lambda t: two, **options)
    wait_until(
        lambda: all(s.connect_failures for s in wrong.stats().slots), what="failed handshakes"
    )
    assert wrong.status().current_size == 0
    errors = " ".join(s.last_error or "" for s in wrong.stats().slots)
    assert "wrong.test" in errors or "verif" in errors.lower() or "Hostname" in errors, errors


# -- exporters ---------------------------------------------------------------------


def test_exporters_report_ready_channels_per_backend(
    make_pool: Callable[..., grpc_pool.Pool], backends: list[EchoServer]
) -> None:
    """Prometheus and OpenTelemetry show each backend's ready channels and connections
    (labelled by address, to sum over a fleet), and a dead backend's counts drop to 0
    in both; stats().subset names the addresses the pool has slots on."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from grpc_pool.otel import instrument
    from grpc_pool.prometheus import PoolCollector

    two = backends[:2]
    pool = make_pool("ipv4:" + ",".join(addresses(two)), size=4, name="spread")
    registry = CollectorRegistry()
    registry.register(PoolCollector(pool))
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    instrument(pool, meter_provider=provider)

    def prometheus(name: str = "grpc_pool_backend_channels_ready") -> dict[str, float]:
        text = generate_latest(registry).decode()
        return {
            sample.labels["address"]: sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == name
        }

    def otel(name: str = "grpc_pool.backend.channels.ready") -> dict[str, float]:
        data = reader.get_metrics_data()
        assert data is not None
        return {
            str(point.attributes["grpc_pool.backend"]): point.value
            for resource in data.resource_metrics
            for scope in resource.scope_metrics
            for metric in scope.metrics
            if metric.name == name
            for point in metric.data.data_points
        }

    def connections() -> tuple[dict[str, float], dict[str, float]]:
        return prometheus("grpc_pool_backend_connections"), otel("grpc_pool.backend.connections")

    pool.wait_ready(timeout=10, min_ready=4)
    both = dict.fromkeys(addresses(two), 2)
    assert prometheus() == otel() == both
    assert connections() == (both, both)
    assert pool.stats().subset == tuple(addresses(two))
    two[1].stop()
    wait_until(lambda: layout(pool)[two[1].target] == (2, 0), what="dead backend")
    one = {two[0].target: 2, two[1].target: 0}
    assert prometheus() == otel() == one
    assert connections() == (one, one)
    assert pool.stats().subset == tuple(addresses(two))  # its slots are still there
    provider.shutdown()


def test_fork_with_a_resolver_thread(echo_server_process: str) -> None:
    """A pool that resolves its target (so a resolver thread runs) survives os.fork():
    the writer holds the resolver off while forking, children build pools of their
    own, the parent keeps serving."""
    from .test_fork import run_scenario

    result = run_scenario("os_fork+resolver", echo_server_process, fork_support=False)
    children = result["children"]
    assert isinstance(children, list) and children
    assert all(child["ok"] and child["status"] == 0 for child in children), children
    assert result["parent_status"] == "healthy"


def test_a_pool_with_fewer_slots_than_backends_follows_its_ranking_when_they_change(
    make_pool: Callable[..., grpc_pool.Pool], backends: list[EchoServer]
) -> None:
    """2 slots over the 2 backends its ranking puts last of 4; the answer grows to all 4
    (its top 2 are then both new: a rule that keeps slots in place fails here) and
    shrinks back: after each change stats().subset is the pool's own top 2
    (``counts`` with its seed), every slot ready on it, by server-side peers too; a
    backend that stays in the top 2 keeps its slot."""
    answer = Answer(addresses(backends[:2]))
    pool = make_pool("svc.test:1", size=2, resolver=answer, resolve_interval=0.2)
    pool.wait_ready(timeout=10, min_ready=2)
    seed = pool._writer._spread.seed
    last = [a for a in addresses(backends) if a not in counts(2, addresses(backends), seed)]
    for now in (last, addresses(backends), last):
        before = {s.slot: s.address for s in pool.stats().slots}
        answer.answer = now
        want = tuple(a for a in now if a in counts(2, now, seed))
        wait_until(
            lambda want=want: pool.stats().subset == want and pool.status().current_size == 2,
            what=f"subset {want}",
        )
        wait_until(
            lambda want=want, now=now: (
                layout(pool) == {a: (1, 1) if a in want else (0, 0) for a in now}
            ),
            what="ready on it",
        )
        assert sorted(c for c in connections(pool, backends) if c) == [1, 1]
        after = {s.slot: s.address for s in pool.stats().slots}
        assert all(after[slot] == a for slot, a in before.items() if a in want)


def test_backend_stats_show_a_leaving_address_while_a_ready_channel_is_on_it() -> None:
    """An address gone from the answer whose slot has not moved off yet still shows,
    after the resolved ones, with its ready channel and connections (so a fleet's sum
    by address counts connections to a backend being scaled in until they leave); a
    slot's dial target maps back to its address only for the pool's ipv4:/ipv6: form."""
    from grpc_pool._config.targets import undial
    from grpc_pool._readers.stats import BackendStats, backend_stats

    got = backend_stats(("a", "b"), [("a", "a", 1), ("b", "c", 2), ("b", None, 1)])
    assert got == (
        BackendStats("a", 1, 1, 1),
        BackendStats("b", 2, 0, 0),
        BackendStats("c", 0, 1, 2),
    )
    assert undial(dial_target("127.0.0.9:5")) == "127.0.0.9:5"
    assert undial(dial_target("[::1]:5")) == "[::1]:5"
    assert undial("svc.test:5") is None and undial("ipv4:127.0.0.1:1,127.0.0.2:1") is None
