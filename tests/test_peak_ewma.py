"""strategy="peak_ewma" (issue 26): power of two choices over each channel's
peak-EWMA latency x (in flight + 1), with an age term for RPCs still out and a way
back for a backend that recovers.

The estimate and the cost are tested without threads (the clock passed in); the
pick with real backends in child processes, counted per backend, never timed."""

from __future__ import annotations

import queue
import time
from collections.abc import Iterator

import grpc
import pytest

import grpc_pool
from grpc_pool._channel import gate
from grpc_pool._channel.gate import RpcCounter
from grpc_pool.cli.bench.backends import WORK, Backends, backends
from grpc_pool.testing.echo import CHAT, COLLECT, ECHO, ECHO_STREAM, EchoServer
from tests.conftest import FAST, wait_until

OK, INTERNAL = grpc.StatusCode.OK, grpc.StatusCode.INTERNAL


def _rpc(counter: RpcCounter, seconds: float, code: grpc.StatusCode = OK) -> None:
    """One RPC on ``counter`` that took ``seconds`` (its start moved back in time)."""
    started = counter._start()
    counter._end(code, None, started - seconds)
    count, _ = counter.pending
    assert count == 0


def test_a_slower_reply_replaces_the_estimate_and_faster_ones_decay_in() -> None:
    """Peak: a reply slower than the estimate is the estimate at once; a faster one
    moves it part of the way; a failure or deadline only raises it (failing fast
    never looks fast); a cancelled call only raises it too (a hedge's loser on a slow
    backend) and counts as the idle channel's probe, so a backend whose every attempt
    loses a hedge is not probed again at every pick."""
    counter = RpcCounter()
    _rpc(counter, 0.060)
    assert 0.060 <= counter.latency < 0.070
    _rpc(counter, 0.002)  # at once: it weighs 1 - exp(-elapsed / DECAY), almost nothing
    assert counter.latency > 0.059
    counter.sampled -= gate.DECAY / 2  # later: it weighs 1 - exp(-0.5), about 0.39
    _rpc(counter, 0.002)
    assert 0.030 < counter.latency < 0.045
    high = counter.latency
    _rpc(counter, 0.0001, INTERNAL)
    counter.sampled -= gate.PROBE_AFTER + 1  # idle long enough: due a probe
    assert counter.cost(gate._monotonic()) == 0.0
    _rpc(counter, 0.0001, grpc.StatusCode.CANCELLED)
    assert counter.latency == high
    assert counter.cost(gate._monotonic()) == high  # the cancelled probe counted
    _rpc(counter, 0.080, grpc.StatusCode.CANCELLED)
    assert counter.latency >= 0.080
    _rpc(counter, 1.0, grpc.StatusCode.DEADLINE_EXCEEDED)
    assert counter.latency >= 1.0


def test_cost_counts_rpcs_still_out_and_probes_an_idle_channel() -> None:
    """cost = max(estimate, mean age of the RPCs in flight) x (in flight + 1): an RPC
    out far longer than the estimate counts before it completes; an idle channel
    without a reply for PROBE_AFTER costs 0 (the next pick probes it)."""
    counter = RpcCounter()
    _rpc(counter, 0.002)
    now = counter.sampled
    assert counter.cost(now) == counter.latency
    started = counter._start()
    assert counter.cost(started + 0.001) == pytest.approx(counter.latency * 2)
    assert counter.cost(started + 1.5) == pytest.approx(1.5 * 2)  # stalled: age wins
    counter._end(OK, None, started)
    assert counter.cost(counter.sampled + gate.PROBE_AFTER + 1) == 0.0
    signals = counter.signals()
    assert signals.in_flight == 0 and signals.latency == counter.latency
    assert signals.pending_age == 0.0 and signals.answered == 2


def test_streams_count_in_flight_but_are_never_a_latency_sample(server: EchoServer) -> None:
    """A stream lasts as long as its caller keeps it: while a server stream, a client
    stream and a bidi stream are open they count in in_flight but not in the unary
    calls' pending age, and once ended (each held open well past the estimate) they
    leave the estimate and its last sample time as the unary calls set them."""
    with grpc_pool.Pool(server.target, size=1, **FAST) as pool:
        pool.wait_ready(timeout=10)
        channel = pool.get_channel()
        for _ in range(3):
            assert channel.unary_unary(ECHO)(b"x", timeout=5) == b"x"
        before = channel.signals
        assert before is not None and before.latency > 0.0
        stream = channel.unary_stream(ECHO_STREAM)(b"30", timeout=10)  # 30 x 10 ms
        requests: queue.Queue[bytes | None] = queue.Queue()
        chat = channel.stream_stream(CHAT)(iter(requests.get, None), timeout=10)
        try:
            requests.put(b"a")
            assert next(stream) == b"30" and next(chat) == b"a"
            during = channel.signals
            assert during is not None and during.in_flight == 2 and during.pending_age == 0.0
            held = max(0.1, 3 * before.latency)  # open far longer than the estimate
            time.sleep(held)
        finally:  # the request iterator's thread ends with it
            requests.put(None)
        assert list(chat) == [] and len(list(stream)) == 29
        collect = channel.stream_unary(COLLECT)
        assert collect(_slowly([b"a", b"b"], held), timeout=10) == b"ab"
        after = channel.signals
        assert after is not None and after.in_flight == 0
        assert after.latency == before.latency  # no stream was a sample
        assert after.since_sample >= 3 * held  # the last sample is still the unary calls'


def _slowly(items: list[bytes], pause: float) -> Iterator[bytes]:
    for item in items:
        time.sleep(pause)
        yield item


def test_peak_ewma_is_a_strategy_name() -> None:
    """PoolConfig takes strategy="peak_ewma"; an unknown name lists it among the allowed."""
    assert grpc_pool.PoolConfig("localhost:1", strategy="peak_ewma").strategy == "peak_ewma"
    with pytest.raises(grpc_pool.InvalidConfig, match="peak_ewma"):
        grpc_pool.PoolConfig("localhost:1", strategy="fastest")


# -- real backends in child processes ----------------------------------------------------
@pytest.fixture(scope="module")
def fleet() -> Iterator[Backends]:
    with backends(["ok:2"] * 4) as running:
        yield running


@pytest.fixture
def four(fleet: Backends) -> Iterator[Backends]:
    yield fleet
    for i in range(4):
        fleet.set(i, "ok:2")


def _share(pool: grpc_pool.Pool, running: Backends, calls: int, slow: int) -> float:
    """The slow backend's share of ``calls`` blocking calls through pool.channel."""
    work = pool.channel.unary_unary(WORK)
    before = running.calls()[slow]
    for _ in range(calls):
        work(b"x", timeout=5)
    return (running.calls()[slow] - before) / calls


@pytest.mark.parametrize("strategy", ["peak_ewma", "power_of_two"])
def test_the_pick_avoids_a_slowed_backend(four: Backends, strategy: str) -> None:
    """One backend of four answers in 60 ms, the others in 2 ms: peak_ewma sends it
    a small share of the calls (counted on the backends), where power_of_two (one
    call at a time: nothing in flight to compare) sends it its full quarter."""
    four.set(3, "ok:60")
    options = {**FAST, "size": 8, "strategy": strategy}
    with grpc_pool.Pool(four.target, **options) as pool:
        pool.wait_ready(timeout=10, min_ready=8)
        _share(pool, four, 20, 3)  # every channel answers once
        share = _share(pool, four, 150, 3)
    if strategy == "peak_ewma":
        assert share < 0.08, share
    else:  # a quarter: 0.25 (sd 0.035 over 150 calls); 0.12 is 3.7 sd below
        assert share > 0.12, share


def test_a_recovered_backend_gets_its_share_back(
    four: Backends, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Slow, then fast again: the idle channels are probed (PROBE_AFTER and DECAY
    shortened here, in proportion) and the backend's share comes back."""
    monkeypatch.setattr(gate, "PROBE_AFTER", 0.2)
    monkeypatch.setattr(gate, "DECAY", 0.2)  # a probe's reply weighs as it would unpatched
    four.set(3, "ok:60")
    options = {**FAST, "size": 8, "strategy": "peak_ewma"}
    with grpc_pool.Pool(four.target, **options) as pool:
        pool.wait_ready(timeout=10, min_ready=8)
        _share(pool, four, 20, 3)
        # Under its fair quarter by far, probes included: PROBE_AFTER is 0.2 s here, so
        # a slower machine (CI's side-by-side suites: 6 of 60) probes more often.
        assert _share(pool, four, 60, 3) < 0.15
        four.set(3, "ok:2")
        wait_until(lambda: _share(pool, four, 80, 3) > 0.15, 30, "its share back")
        signals = [c.signals for c in pool._snapshot]
        assert all(s is not None and s.answered > 0 and s.in_flight == 0 for s in signals)
