"""Hedged requests across pooled channels (PoolConfig.hedging, HedgingPolicy):
real echo backends in child processes (grpc_pool.testing.deploy), one of them
slow; what each backend received (and saw cancelled) is read from its record,
never from timings."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

import grpc_pool
from grpc_pool import HedgingPolicy, InvalidConfig
from grpc_pool.testing.deploy import Backend, free_port, reap_all
from grpc_pool.testing.deploy.backend import SERVER_STREAM, UNARY

pytestmark = pytest.mark.timeout(60)

SLOW_MS = 1500  # the slow backend: far beyond every hedging delay used here


class Backends:
    """A slow backend and a fast one, each recording what it received."""

    def __init__(self, workdir: str) -> None:
        self.slow = Backend(free_port(), record=os.path.join(workdir, "slow"), slow_ms=SLOW_MS)
        self.fast = Backend(free_port(), record=os.path.join(workdir, "fast"))
        self.target = f"ipv4:{self.slow.address},{self.fast.address}"

    def records(self, which: str) -> list[str]:
        backend = self.slow if which == "slow" else self.fast
        assert backend.record is not None
        with open(backend.record) as fh:
            return fh.read().split()

    def wait_record(self, which: str, entry: str, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if entry in self.records(which):
                return True
            time.sleep(0.02)
        return False


@pytest.fixture(scope="module")
def backends() -> Iterator[Backends]:
    with tempfile.TemporaryDirectory(prefix="grpc-pool-hedge-") as workdir:
        pair = Backends(workdir)
        try:
            pair.slow.start()
            pair.fast.start()
            yield pair
        finally:
            for backend in (pair.slow, pair.fast):
                backend.term()
                backend.wait(5)
            reap_all()


def _pool(backends: Backends, policy: HedgingPolicy | None) -> grpc_pool.Pool:
    """One channel per backend (the pool spreads its two slots over both)."""
    pool = grpc_pool.Pool(backends.target, size=2, insecure=True, hedging=policy)
    pool.wait_ready(timeout=15, min_ready=2)
    return pool


def _unary(channel: Any, rid: str) -> bytes:
    return channel.unary_unary(UNARY)(rid.encode(), timeout=10)  # type: ignore[no-any-return]


def _stream(channel: Any, rid: str) -> list[bytes]:
    return list(channel.unary_stream(SERVER_STREAM)(rid.encode(), timeout=10))


@pytest.mark.parametrize("api", ["channel", "get_channel"])
@pytest.mark.parametrize("kind", ["unary", "server_stream"])
def test_a_hedge_goes_to_another_channel_and_the_loser_is_cancelled(
    backends: Backends, api: str, kind: str
) -> None:
    """Every RPC picked onto the slow backend's channel is hedged to the fast one
    after the delay: the fast backend received it too, the caller got its answer,
    and the slow backend saw its attempt cancelled; stats() counts the hedges
    sent and won."""
    policy = HedgingPolicy(methods=("/deploy.Echo/",), delay=0.2, budget=1.0)
    prefix = f"h-{api}-{kind}-"
    with _pool(backends, policy) as pool:
        rids = [f"{prefix}{i}" for i in range(6)]
        for rid in rids:
            channel = pool.channel if api == "channel" else pool.get_channel()
            if kind == "unary":
                assert _unary(channel, rid) == rid.encode()
            else:
                assert _stream(channel, rid) == [rid.encode()] * 2
        on_slow = [r for r in rids if r in backends.records("slow")]
        assert on_slow, "round robin put none on the slow backend"
        fast = backends.records("fast")
        for rid in on_slow:
            assert rid in fast  # the hedge went to the other channel
            assert backends.wait_record("slow", f"{rid}:cancelled"), rid
        stats = pool.stats()
        # (a fast attempt slower than the delay on a busy machine is hedged too)
        assert stats.hedges >= len(on_slow)
        assert 1 <= stats.hedges_won <= stats.hedges


def test_an_unlisted_method_is_never_hedged(backends: Backends) -> None:
    """A method the policy does not list (non-idempotent) goes to one backend only,
    however slow: no hedge is sent."""
    policy = HedgingPolicy(methods=(SERVER_STREAM,), delay=0.05, budget=1.0)
    with _pool(backends, policy) as pool:
        rids = [f"n-{i}" for i in range(4)]
        for rid in rids:
            assert _unary(pool.channel, rid) == rid.encode()
        slow, fast = backends.records("slow"), backends.records("fast")
        assert all((r in slow) != (r in fast) for r in rids)
        assert any(r in slow for r in rids)
        assert pool.stats().hedges == 0


def test_no_hedge_when_the_answer_comes_before_the_delay(backends: Backends) -> None:
    """With a delay longer than the slow backend takes, every RPC is answered by
    its first attempt: each reached one backend, and no hedge was sent."""
    policy = HedgingPolicy(methods=("/deploy.Echo/",), delay=SLOW_MS / 1000 + 5, budget=1.0)
    with _pool(backends, policy) as pool:
        rids = [f"d-{i}" for i in range(4)]
        for rid in rids:
            assert _unary(pool.channel, rid) == rid.encode()
        slow, fast = backends.records("slow"), backends.records("fast")
        assert all((r in slow) != (r in fast) for r in rids)
        assert pool.stats().hedges == 0


def test_the_budget_caps_the_hedges(backends: Backends) -> None:
    """budget=0 with a burst of 1: one hedge in all, however many RPCs are slow
    (the later ones wait for the slow backend)."""
    policy = HedgingPolicy(methods=("/deploy.Echo/",), delay=0.05, budget=0.0, burst=1)
    with _pool(backends, policy) as pool:
        for i in range(4):
            assert _unary(pool.channel, f"b-{i}") == f"b-{i}".encode()
        assert sum(f"b-{i}" in backends.records("slow") for i in range(4)) >= 2
        assert pool.stats().hedges == 1


def test_no_hedge_past_the_deadline(backends: Backends) -> None:
    """A hedge is never sent once the caller's deadline has passed: an RPC with a
    timeout shorter than the delay fails DEADLINE_EXCEEDED on its first attempt
    alone (when it was picked onto the slow backend)."""
    policy = HedgingPolicy(methods=("/deploy.Echo/",), delay=1.0, budget=1.0)
    with _pool(backends, policy) as pool:
        codes = set()
        for i in range(4):
            try:
                pool.channel.unary_unary(UNARY)(f"t-{i}".encode(), timeout=0.3)
            except grpc.RpcError as error:
                codes.add(error.code())
        assert codes == {grpc.StatusCode.DEADLINE_EXCEEDED}
        assert pool.stats().hedges == 0


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("methods", ()),
        ("methods", "/a.B/"),
        ("max_attempts", 1),
        ("max_attempts", 6),
        ("delay", -1.0),
        ("percentile", 0.2),
        ("window", 8),
        ("budget", 1.5),
        ("burst", 0),
        ("non_fatal_codes", (grpc.StatusCode.OK,)),
    ],
)
def test_bad_hedging_values(field: str, value: object) -> None:
    """Each bad HedgingPolicy value is an InvalidConfig naming the field."""
    options: dict[str, Any] = {"methods": ("/a.B/",), field: value}
    with pytest.raises(InvalidConfig, match=f"^{field}="):
        HedgingPolicy(**options)


def test_hedging_must_be_a_policy() -> None:
    """PoolConfig.hedging takes a HedgingPolicy or None; methods alone is enough."""
    assert HedgingPolicy(methods=("/pkg.Service/",)).max_attempts == 2
    with pytest.raises(InvalidConfig, match=r"^hedging="):
        grpc_pool.PoolConfig("127.0.0.1:1", insecure=True, hedging={"methods": ()})  # type: ignore[arg-type]


def test_the_caller_gets_the_winners_call(backends: Backends) -> None:
    """Through hedging, ``with_call`` returns the response with the winning
    attempt's call (OK), and a server stream's ``initial_metadata()`` and
    ``code()`` are its winner's: the fast backend's header, OK."""
    policy = HedgingPolicy(methods=("/deploy.Echo/",), delay=0.2, budget=1.0)
    with _pool(backends, policy) as pool:
        for i in range(4):  # round robin: two of them start on the slow backend
            rid = f"w-{i}"
            response, call = pool.channel.unary_unary(UNARY).with_call(rid.encode(), timeout=10)
            assert response == rid.encode()
            assert call.code() is grpc.StatusCode.OK
            stream = pool.channel.unary_stream(SERVER_STREAM)(f"s-{i}".encode(), timeout=10)
            assert dict(stream.initial_metadata())["x-seen"] == f"s-{i}"
            assert list(stream) == [f"s-{i}".encode()] * 2
            assert stream.code() is grpc.StatusCode.OK
        assert pool.stats().hedges_won >= 2


@pytest.mark.parametrize("api", ["channel", "get_channel"])
def test_a_future_is_hedged_too(backends: Backends, api: str) -> None:
    """``future()`` of a hedged method: an RPC picked onto the slow backend is
    hedged to the other channel, the future's result is the fast answer, its
    done-callback runs once, and the slow backend saw its attempt cancelled."""
    policy = HedgingPolicy(methods=("/deploy.Echo/",), delay=0.2, budget=1.0)
    with _pool(backends, policy) as pool:
        rids = [f"f-{api}-{i}" for i in range(4)]
        done: list[object] = []
        for rid in rids:
            channel = pool.channel if api == "channel" else pool.get_channel()
            future = channel.unary_unary(UNARY).future(rid.encode(), timeout=10)
            future.add_done_callback(done.append)
            assert future.result(timeout=10) == rid.encode()
            assert future.code() is grpc.StatusCode.OK
        on_slow = [r for r in rids if r in backends.records("slow")]
        assert on_slow
        for rid in on_slow:
            assert rid in backends.records("fast")
            assert backends.wait_record("slow", f"{rid}:cancelled"), rid
        deadline = time.monotonic() + 5  # the last callback runs on the race's thread
        while len(done) < len(rids) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(done) == len(rids)
        assert pool.stats().hedges >= len(on_slow)
