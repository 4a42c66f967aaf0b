"""Outlier ejection (issue 25): a backend whose calls fail with server-side errors
leaves the pick; the caller's own errors never eject anyone.

The rule (``decide``) is tested without threads; the behaviour with real backends,
each in a child process (``grpc_pool.cli.bench.backends``), counted per backend."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from types import SimpleNamespace

import grpc
import pytest

import grpc_pool
from grpc_pool._channel.gate import RpcCounter
from grpc_pool._config.outliers import OutlierEjection
from grpc_pool._contract.state import Ejection
from grpc_pool._writer.outliers import IDLE_INTERVAL, Ejector, Sample, decide, ejection_limit
from grpc_pool.cli.bench.backends import WORK, Backends, backends
from tests.conftest import FAST, Recorder, wait_until

OK, INTERNAL = grpc.StatusCode.OK, grpc.StatusCode.INTERNAL


# -- the rule, no threads -------------------------------------------------------------
def test_failures_in_a_row_eject_at_once_and_the_time_grows_with_each_ejection() -> None:
    """consecutive_failures in a row eject between intervals; the ejection lasts
    base x times ejected in a row, capped at max_ejection_time, and ends by itself."""
    policy = OutlierEjection(consecutive_failures=5, base_ejection_time=10, max_ejection_time=25)
    samples = [Sample("a", failing=5), Sample("b"), Sample("c")]
    records, changes = decide(policy, samples, {}, now=100.0, statistical=False)
    assert records["a"].ejected and records["a"].until == 110.0
    assert [(r.backend, r.ejected) for r, _ in changes] == [("a", True)]
    assert "5 failures in a row" in changes[0][1]
    assert not decide(policy, [Sample("a", failing=4)], {}, 0.0, False)[1]
    # over: back in the pick; ejected again: twice as long, then capped
    records, changes = decide(policy, samples[1:], records, now=110.0, statistical=False)
    assert not records["a"].ejected and changes[0][0].backend == "a"
    records, _ = decide(policy, samples, records, now=111.0, statistical=False)
    assert records["a"].until == 131.0 and records["a"].ejections == 2
    records = {"a": Ejection("a", multiplier=5)}
    records, _ = decide(policy, samples, records, now=0.0, statistical=False)
    assert records["a"].until == 25.0


def test_statistics_need_volume_and_hosts_and_judge_percentage_and_success_rate() -> None:
    """Failure percentage and success rate run at the interval, only over backends with
    request_volume calls, only with minimum_hosts of them."""
    policy = OutlierEjection(consecutive_failures=0, failure_percentage=50, request_volume=10)
    half = [Sample("a", answered=10, failed=10), Sample("b", 20), Sample("c", 20)]
    assert decide(policy, half, {}, 0.0, statistical=True)[0]["a"].ejected
    assert not decide(policy, half, {}, 0.0, statistical=False)[1]  # between intervals
    quiet = [Sample("a", answered=1, failed=8), Sample("b", 20), Sample("c", 20)]
    assert not decide(policy, quiet, {}, 0.0, True)[1]  # under request_volume
    assert not decide(policy, half[:2], {}, 0.0, True)[1]  # under minimum_hosts
    # success rate: 6 backends, one at 70% while the others answer all
    rate = OutlierEjection(consecutive_failures=0, failure_percentage=0, request_volume=10)
    six = [Sample("a", answered=14, failed=6)] + [Sample(f"b{i}", 20) for i in range(5)]
    _, changes = decide(rate, six, {}, 0.0, True)
    assert [r.backend for r, _ in changes] == ["a"] and "success rate 70%" in changes[0][1]
    off = OutlierEjection(consecutive_failures=0, failure_percentage=0, success_rate_stdev=0)
    assert not decide(off, six, {}, 0.0, True)[1]


def test_never_more_than_max_ejection_percent_never_the_last() -> None:
    """All failing: max_ejection_percent of the backends (rounded down) leave, never all."""
    assert [ejection_limit(n, 50) for n in (1, 2, 3, 4, 5)] == [0, 1, 1, 2, 2]
    assert ejection_limit(3, 100) == 2 and ejection_limit(10, 10) == 1
    policy = OutlierEjection()
    failing = [Sample(b, failing=9) for b in "abcd"]
    records, changes = decide(policy, failing, {}, 0.0, False)
    assert sum(r.ejected for r in records.values()) == 2 and len(changes) == 2
    records, changes = decide(policy, failing, records, 1.0, False)  # still full
    assert not changes
    assert not decide(policy, [Sample("a", failing=99)], {}, 0.0, False)[1]  # the only one


def test_an_interval_without_failure_earns_a_step_back() -> None:
    """A backend back in the pick that answers an interval without failing has its
    multiplier decreased (A50), so a later ejection is shorter again."""
    policy = OutlierEjection()
    records = {"a": Ejection("a", ejections=3, multiplier=3)}
    records, _ = decide(policy, [Sample("a", answered=30)], records, 0.0, True)
    assert records["a"].multiplier == 2
    records, _ = decide(policy, [Sample("a", answered=30, failed=1)], records, 1.0, True)
    assert records["a"].multiplier == 2


def test_an_idle_pool_is_judged_rarely_and_a_busy_one_every_interval() -> None:
    """While no call ends and no backend is out or on a multiplier, or the pool
    has one backend, the next statistical check is IDLE_INTERVAL away (the writer
    sleeps); once calls end on two backends it is back to every ``interval``, and
    a backend on a multiplier keeps the interval (its step back must not wait)."""
    policy = OutlierEjection(interval=0.5)
    config = grpc_pool.PoolConfig(target="127.0.0.1:1", outlier_ejection=policy)
    ejector = Ejector(config, "t", lambda: None)
    counters = {name: RpcCounter(0) for name in "ab"}
    both = [SimpleNamespace(channel_id=n, target=n, _counter=c) for n, c in counters.items()]

    def next_check(channels: list[SimpleNamespace]) -> float:
        ejector._next = 0.0  # the statistical check is due now
        before = time.monotonic()
        ejector.tick(channels)  # type: ignore[arg-type]
        return min(ejector.deadlines()) - before

    assert next_check(both) >= IDLE_INTERVAL
    counters["a"]._start()
    counters["a"]._end(OK)
    assert 0.5 <= next_check(both) < IDLE_INTERVAL
    counters["a"]._start()
    counters["a"]._end(OK)
    assert next_check(both[:1]) >= IDLE_INTERVAL  # one backend: never ejected
    ejector.records = {"a": Ejection("a", ejections=2, multiplier=2)}  # one step back: 1 left
    assert next_check(both) < IDLE_INTERVAL


def test_what_counts_as_a_failure() -> None:
    """INTERNAL, UNKNOWN, DATA_LOSS and UNAVAILABLE after reaching a server fail;
    the caller's own errors are answers (they reset the run); CANCELLED, a failed
    pick and (unless chosen) DEADLINE_EXCEEDED are neither."""
    policy = OutlierEjection()
    counter = RpcCounter(0, policy.failure_codes, policy.neutral_codes, 5)
    codes = grpc.StatusCode
    for code in (codes.INTERNAL, codes.UNKNOWN, codes.DATA_LOSS, codes.UNAVAILABLE):
        counter._start()
        counter._end(code)
    assert (counter.failed, counter.failing, counter.answered) == (4, 4, 0)
    app = [codes.NOT_FOUND, codes.INVALID_ARGUMENT, codes.ALREADY_EXISTS]
    for code in (*app, codes.PERMISSION_DENIED, codes.FAILED_PRECONDITION, OK):
        counter._start()
        counter._end(code)
    assert (counter.failed, counter.failing, counter.answered) == (4, 0, 6)

    class FailedPick(grpc.RpcError, grpc.Call):  # type: ignore[misc]
        def code(self) -> grpc.StatusCode:
            return codes.UNAVAILABLE

        def details(self) -> str:
            return "failed to connect to all addresses; last error: refused"

    for code, error in ((codes.CANCELLED, None), (codes.DEADLINE_EXCEEDED, None)):
        counter._start()
        counter._end(code, error)
    counter._start()
    counter._end(codes.UNAVAILABLE, FailedPick())
    assert (counter.failed, counter.answered) == (4, 6)
    strict = OutlierEjection(deadline_exceeded=True)
    counter = RpcCounter(0, strict.failure_codes, strict.neutral_codes, 5)
    counter._start()
    counter._end(codes.DEADLINE_EXCEEDED)
    assert counter.failed == 1


def test_bad_settings_are_refused_naming_the_field() -> None:
    """OutlierEjection and PoolConfig.outlier_ejection check their values at construction."""
    with pytest.raises(grpc_pool.InvalidConfig, match="max_ejection_percent=101"):
        OutlierEjection(max_ejection_percent=101)
    with pytest.raises(grpc_pool.InvalidConfig, match="max_ejection_time=1"):
        OutlierEjection(base_ejection_time=2, max_ejection_time=1)
    with pytest.raises(grpc_pool.InvalidConfig, match="outlier_ejection=5"):
        grpc_pool.PoolConfig("localhost:1", outlier_ejection=5)  # type: ignore[arg-type]
    assert grpc_pool.PoolConfig("localhost:1").outlier_ejection == OutlierEjection()


# -- real backends in child processes ----------------------------------------------------
@pytest.fixture(scope="module")
def fleet() -> Iterator[Backends]:
    with backends(["ok"] * 4) as running:
        yield running


@pytest.fixture
def four(fleet: Backends) -> Iterator[Backends]:
    for i in range(4):
        fleet.set(i, "ok")
    yield fleet
    for i in range(4):
        fleet.set(i, "ok")


def _pool(backends: Backends, recorder: Recorder, **options: object) -> grpc_pool.Pool:
    pool = grpc_pool.Pool(backends.target, size=8, listeners=[recorder], **{**FAST, **options})
    pool.wait_ready(timeout=10, min_ready=8)
    return pool


def _send(pool: grpc_pool.Pool, n: int, request: bytes = b"x") -> dict[str, int]:
    """n blocking calls through pool.channel; outcomes by code name."""
    work = pool.channel.unary_unary(WORK)
    seen: dict[str, int] = {}
    for _ in range(n):
        try:
            work(request, timeout=5)
            name = "OK"
        except grpc.RpcError as exc:
            name = exc.code().name
        seen[name] = seen.get(name, 0) + 1
    return seen


def test_a_backend_failing_every_call_leaves_the_pick(
    four: Backends, caplog: pytest.LogCaptureFixture
) -> None:
    """One backend answering INTERNAL to every call is ejected after a few failures
    (every slot on it); from then on no call, retried ones included, reaches it;
    the ejection is an event, one WARNING with the figures, and in stats(); the
    periodic status event counts its slots out of the ready ones, as status() does."""
    four.set(3, "fail")
    recorder = Recorder()
    caplog.set_level(logging.WARNING, logger="grpc_pool")
    policy = grpc_pool.RetryPolicy(codes=(grpc.StatusCode.UNAVAILABLE, INTERNAL))
    with _pool(four, recorder, strategy="power_of_two", retry=policy, status_interval=0.05) as pool:
        # until it is out: 40 calls put only 4 on it (5 in a row eject) in 1 run of 30
        wait_until(lambda: bool(_send(pool, 10) and recorder.named("backend_ejected")), 10)
        (event,) = recorder.named("backend_ejected")
        assert event.backend.endswith(four.addresses[3]) and "in a row" in event.reason
        before = four.calls()
        assert _send(pool, 80) == {"OK": 80}
        after = four.calls()
        assert after[3] == before[3], "a call reached the ejected backend"
        assert all(after[i] > before[i] for i in range(3))
        (ejection,) = pool.stats().ejections
        assert ejection.ejected and ejection.ejections == 1 and ejection.remaining
        assert pool.status().current_size == 6  # its 2 slots out of the pick
        seen = len(recorder.named("status"))
        wait_until(lambda: len(recorder.named("status")) > seen, 10, "a status event")
        assert recorder.named("status")[-1].current_size == 6
    warnings = [r for r in caplog.records if "ejected" in r.getMessage()]
    assert len(warnings) == 1 and four.addresses[3] in warnings[0].getMessage()


def test_a_backend_failing_half_its_calls_is_ejected_by_failure_percentage(
    four: Backends,
) -> None:
    """Every other call INTERNAL (never 5 in a row): the interval's failure
    percentage ejects it, and only it."""
    four.set(0, "half")
    recorder = Recorder()
    policy = OutlierEjection(consecutive_failures=0, failure_percentage=40, interval=0.5)
    with _pool(four, recorder, outlier_ejection=policy) as pool:
        wait_until(lambda: bool(_send(pool, 20) and recorder.named("backend_ejected")), 20)
        (event,) = recorder.named("backend_ejected")
        assert event.backend.endswith(four.addresses[0]) and "failed in" in event.reason
        assert event.failed > 0 and event.answered > 0


def test_a_backend_that_recovers_gets_its_share_back(four: Backends) -> None:
    """Ejected while failing; once the ejection time is over and it answers again it
    is back in the pick and takes calls; the ejection count stays in stats()."""
    four.set(1, "fail")
    recorder = Recorder()
    policy = OutlierEjection(base_ejection_time=0.5, max_ejection_time=0.5)
    with _pool(four, recorder, outlier_ejection=policy) as pool:
        wait_until(lambda: bool(_send(pool, 10) and recorder.named("backend_ejected")), 20)
        four.set(1, "ok")
        wait_until(lambda: bool(recorder.named("backend_unejected")), 10, "the return")
        before = four.calls()[1]
        assert _send(pool, 160) == {"OK": 160}
        assert four.calls()[1] - before >= 20  # its share is a quarter: 40 (sd 5.5)
        (ejection,) = pool.stats().ejections
        assert not ejection.ejected and ejection.ejections >= 1


def test_the_callers_own_errors_never_eject_a_healthy_backend(four: Backends) -> None:
    """A client sending only invalid requests (INVALID_ARGUMENT from every backend):
    nothing is ejected, over failures in a row and statistics alike."""
    recorder = Recorder()
    policy = OutlierEjection(interval=0.2, request_volume=5, failure_percentage=1)
    with _pool(four, recorder, outlier_ejection=policy) as pool:
        sent: dict[str, int] = {}
        deadline = time.monotonic() + 1.0  # five intervals judged while they are sent
        while time.monotonic() < deadline:
            for name, count in _send(pool, 20, b"bad").items():
                sent[name] = sent.get(name, 0) + count
        assert set(sent) == {"INVALID_ARGUMENT"} and sent["INVALID_ARGUMENT"] >= 100
        assert pool.stats().status.current_size == 8
        assert not recorder.named("backend_ejected") and not pool.stats().ejections


def test_all_backends_failing_at_most_max_ejection_percent_leave(four: Backends) -> None:
    """Every backend fails: at most max_ejection_percent (50%: 2 of 4) are ejected and
    RPCs still go to the others (and still fail, as they would without the pool)."""
    for i in range(4):
        four.set(i, "fail")
    recorder = Recorder()
    with _pool(four, recorder) as pool:
        assert _send(pool, 100) == {"INTERNAL": 100}

        def ejected() -> int:
            return sum(1 for e in pool.stats().ejections if e.ejected)

        wait_until(lambda: ejected() == 2, 10, "two ejections")
        assert _send(pool, 40) == {"INTERNAL": 40} and ejected() == 2  # never a third
        before = four.calls()
        assert _send(pool, 40) == {"INTERNAL": 40}
        after = four.calls()
        assert sum(1 for a, b in zip(after, before, strict=True) if a > b) == 2


def test_off_keeps_every_backend(four: Backends) -> None:
    """outlier_ejection=None: a failing backend keeps its share (the old behaviour)."""
    four.set(2, "fail")
    recorder = Recorder()
    with _pool(four, recorder, outlier_ejection=None) as pool:
        assert _send(pool, 80).get("INTERNAL", 0) >= 10
        assert not recorder.named("backend_ejected") and not pool.stats().ejections


def test_both_exporters_show_the_ejection(four: Backends) -> None:
    """Prometheus and OpenTelemetry show the ejected backend (1 while ejected) and its
    ejection count, labelled by backend."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from grpc_pool.otel import instrument
    from grpc_pool.prometheus import PoolCollector

    four.set(0, "fail")
    recorder = Recorder()
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    with _pool(four, recorder) as pool:
        instrument(pool, meter_provider=provider)
        registry = CollectorRegistry()
        registry.register(PoolCollector(pool))
        wait_until(lambda: bool(_send(pool, 10) and pool.stats().ejections), 10, "an ejection")
        text = generate_latest(registry).decode()
        samples = {
            (s.name, s.labels.get("address", "")): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }
        (backend,) = [e.backend for e in pool.stats().ejections]
        assert samples[("grpc_pool_backend_ejected", backend)] == 1
        assert samples[("grpc_pool_backend_ejections_total", backend)] == 1
        data = reader.get_metrics_data()
        assert data is not None
        points = {
            (m.name, p.attributes.get("grpc_pool.backend")): p.value
            for r in data.resource_metrics
            for sc in r.scope_metrics
            for m in sc.metrics
            for p in m.data.data_points
            if m.name.startswith("grpc_pool.backend.eject")
        }
        assert points == {
            ("grpc_pool.backend.ejected", backend): 1,
            ("grpc_pool.backend.ejections", backend): 1,
        }
    provider.shutdown()
