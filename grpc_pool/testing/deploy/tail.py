"""One bad backend of four (issue 25's and 26's scenarios), the one harness of the
tail-latency and outlier-ejection benchmarks: 4 echo backends in child processes
answering in ``fast_ms``, the last one bad; clients in child processes of their
own, every one started and warmed up first, then run one after another against the
same backends, each an open-loop load of ``rate`` unary RPCs per second for
``seconds`` (from a pool of threads, so a slow RPC never delays the next send),
every latency counted from its scheduled send and a failed RPC counted as at least
the deadline (so neither sending less nor failing fast improves a percentile).

Scenarios: ``steady`` (the bad one answers in ``slow_ms``), ``episode`` (it stalls
``stall_ms`` per request for the middle third of each client's run), ``failing``
(it answers every call INTERNAL at once; no warm-up, so an ejection starts from
nothing). One client at a time: on 2 cores, six open loops at once measure the
CPU, not the backends.

    result = run_tail("steady", clients=("reference", "rr", "pool_peak_ewma"))
    result["pool_peak_ewma"].p99       # seconds
    result["pool_peak_ewma"].failed    # RPCs that failed (deadline 1 s)

Clients (``TAIL_CLIENTS``; a pool of ``size`` 8 each): ``reference`` (the pool over
the fast backends only), ``reference_hedging`` (the same with hedging: the extra
RPCs hedging sends on healthy backends), ``rr`` (raw grpcio ``round_robin`` over
all four), ``rr_od`` (the same under grpcio's own outlier detection, gRFC A50),
``pool`` (the pool, ``round_robin``), ``pool_p2c`` (``power_of_two``),
``pool_peak_ewma``, ``pool_hedging`` (``HedgingPolicy(methods=("/deploy.Echo/",))``,
every other field defaulted), ``pool_peak_ewma_hedging``, ``pool_hedging_10ms`` (a
fixed 10 ms delay, a 30% budget), ``pool_p2c_hedging``. Add a client:
``TAIL_CLIENTS[name] = factory(fast_targets, all_targets) -> (channel, close, pool
or None)``.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

from .backend import SERVICE, UNARY
from .dnsmasq import free_port
from .harness import Backend, end_children, reap_all

__all__ = ["OD_CONFIG", "SCENARIOS", "TAIL_CLIENTS", "TailClient", "TailResult", "run_tail"]

SCENARIOS = ("steady", "episode", "failing")
# grpcio's own outlier ejection, with the pool's default figures (A50's minimum
# hosts of 5 would never judge 4 backends).
OD_CONFIG = json.dumps(
    {
        "loadBalancingConfig": [
            {
                "outlier_detection_experimental": {
                    "interval": "1s",
                    "baseEjectionTime": "30s",
                    "maxEjectionTime": "300s",
                    "maxEjectionPercent": 50,
                    "failurePercentageEjection": {
                        "threshold": 85,
                        "enforcementPercentage": 100,
                        "minimumHosts": 3,
                        "requestVolume": 20,
                    },
                    "childPolicy": [{"round_robin": {}}],
                }
            }
        ]
    }
)
RR_CONFIG = json.dumps({"loadBalancingConfig": [{"round_robin": {}}]})

TailFactory = Callable[[Sequence[str], Sequence[str]], tuple[Any, Callable[[], None], Any]]


def _pool(targets: Sequence[str], **options: Any) -> tuple[Any, Callable[[], None], Any]:
    import grpc_pool

    pool = grpc_pool.Pool("ipv4:" + ",".join(targets), size=8, insecure=True, **options)
    return pool.channel, pool.close, pool


def _hedging(**fields: Any) -> Any:
    import grpc_pool

    return grpc_pool.HedgingPolicy(methods=(f"/{SERVICE}/",), **fields)


def _raw(targets: Sequence[str], config: str = RR_CONFIG) -> tuple[Any, Callable[[], None], Any]:
    import grpc

    channel = grpc.insecure_channel(
        "ipv4:" + ",".join(targets), options=[("grpc.service_config", config)]
    )
    grpc.channel_ready_future(channel).result(timeout=20)
    return channel, channel.close, None


TAIL_CLIENTS: dict[str, TailFactory] = {
    "reference": lambda fast, every: _pool(fast),
    "reference_hedging": lambda fast, every: _pool(fast, hedging=_hedging()),
    "rr": lambda fast, every: _raw(every),
    "rr_od": lambda fast, every: _raw(every, OD_CONFIG),
    "pool": lambda fast, every: _pool(every),
    "pool_p2c": lambda fast, every: _pool(every, strategy="power_of_two"),
    "pool_peak_ewma": lambda fast, every: _pool(every, strategy="peak_ewma"),
    "pool_hedging": lambda fast, every: _pool(every, hedging=_hedging()),
    "pool_peak_ewma_hedging": lambda fast, every: _pool(
        every, strategy="peak_ewma", hedging=_hedging()
    ),
    "pool_hedging_10ms": lambda fast, every: _pool(every, hedging=_hedging(delay=0.01, budget=0.3)),
    "pool_p2c_hedging": lambda fast, every: _pool(
        every, strategy="power_of_two", hedging=_hedging()
    ),
}


@dataclass
class TailClient:
    name: str
    sent: int = 0
    failed: int = 0
    latencies: list[float] = field(default_factory=list)  # of the RPCs that succeeded
    stats: dict[str, int] = field(default_factory=dict)  # the pool's hedges, rpcs
    error: str | None = None

    def quantile(self, q: float) -> float:
        """The ``q`` quantile of every RPC's latency, a failed RPC counting as the
        deadline or more (so failing fast never improves a percentile)."""
        ordered = sorted(self.latencies) + [float("inf")] * self.failed
        if not ordered:
            return float("nan")
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    @property
    def p50(self) -> float:
        return self.quantile(0.50)

    @property
    def p99(self) -> float:
        return self.quantile(0.99)

    @property
    def extra(self) -> float | None:
        """Hedges sent per RPC (None when the client does not hedge)."""
        hedges, rpcs = self.stats.get("hedges"), self.sent
        return None if hedges is None or not rpcs else hedges / rpcs

    def data(self) -> dict[str, Any]:
        """As JSON: the successes' latencies (ms, sorted), failures, the pool's counts."""
        latencies = [round(x * 1000, 3) for x in sorted(self.latencies)]
        return {"sent": self.sent, "failed": self.failed, "latencies_ms": latencies, **self.stats}


@dataclass
class TailResult:
    scenario: str
    clients: dict[str, TailClient]
    seconds: float

    def __getitem__(self, name: str) -> TailClient:
        return self.clients[name]

    def data(self) -> dict[str, Any]:
        return {n: c.data() for n, c in self.clients.items()}


def _open_loop(
    channel: Any, rate: float, seconds: float, deadline: float
) -> tuple[list[float], int, int]:
    """RPCs sent at their scheduled times (from a pool of threads, so a slow one
    never delays the next); (latencies of the successes, failures, sent)."""

    unary = channel.unary_unary(UNARY)
    latencies: list[float] = []
    failed = [0]
    lock = threading.Lock()

    def one(i: int, scheduled: float) -> None:
        try:
            unary(f"t{i}".encode(), timeout=deadline)
        except Exception:  # an RpcError, or a pool refusing at once: a failure either way
            with lock:
                failed[0] += 1
            return
        done = time.monotonic() - scheduled
        with lock:
            latencies.append(done)

    count = int(rate * seconds)
    with futures.ThreadPoolExecutor(max_workers=int(rate * deadline) + 16) as pool:
        start = time.monotonic() + 0.05
        for i in range(count):
            scheduled = start + i / rate
            pause = scheduled - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            pool.submit(one, i, scheduled)
    return latencies, failed[0], count


def _client_main(
    name: str,
    fast: Sequence[str],
    every: Sequence[str],
    go: Any,
    out: Any,
    load: dict[str, Any],
    warmup: int,
    turn: float,
) -> None:
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    try:
        channel, close, pool = TAIL_CLIENTS[name](fast, every)
        try:
            if pool is not None:
                pool.wait_ready(timeout=15, min_ready=8)
            unary = channel.unary_unary(UNARY)
            for i in range(warmup):  # warm up (and give an adaptive hedging delay its samples)
                unary(f"w{i}".encode(), timeout=5)
            before = _counts(pool)
            out.put(("ready", name))
            # Its turn comes after every client before it (a shorter bound once let
            # the last clients start together, overlapping the one still running).
            if not go.wait(turn):
                raise RuntimeError(f"no start signal within {turn:.0f} s")
            latencies, failed, sent = _open_loop(channel, **load)
            after = _counts(pool)
            stats = {k: after[k] - before[k] for k in after}
        finally:
            close()
        out.put(("result", TailClient(name, sent, failed, latencies, stats)))
    except BaseException as exc:  # reported, never a hung parent
        out.put(("result", TailClient(name, error=repr(exc))))


def _counts(pool: Any) -> dict[str, int]:
    if pool is None or pool.config.hedging is None:  # counted only where it hedges
        return {}
    stats = pool.stats()
    return {"hedges": stats.hedges, "hedges_won": stats.hedges_won}


def run_tail(
    scenario: str,
    clients: Sequence[str] = ("reference", "rr", "pool", "pool_hedging"),
    *,
    rate: float = 200.0,
    seconds: float = 12.0,
    deadline: float = 1.0,
    fast_ms: int = 2,
    slow_ms: int = 60,
    stall_ms: int = 1500,
    together: bool = False,
) -> TailResult:
    """4 backends, the last one bad as ``scenario`` says (``SCENARIOS``); the clients
    one after another against the same backends (every client process started and
    warmed up first), or with ``together`` all at once (one episode): on 2 cores,
    six open loops at once measure the CPU, not the backends."""
    if scenario not in SCENARIOS:
        raise ValueError(f"scenario={scenario!r}: expected one of {SCENARIOS}")
    episode = scenario == "episode"
    # Every client's turn, then the backends' own deadline (their default 90 s
    # once ended a run of eight 12 s clients early).
    turn = 60.0 + len(clients) * (seconds + deadline + 60.0)
    backends = [Backend(free_port(), slow_ms=fast_ms, lifetime=turn + 60) for _ in range(3)]
    slow = Backend(
        free_port(),
        slow_ms=slow_ms if scenario == "steady" else fast_ms,
        stall_ms=stall_ms,
        fail=scenario == "failing",
        lifetime=turn + 60,
    )
    backends.append(slow)
    warmup = 0 if scenario == "failing" else 100
    fast = [b.address for b in backends[:3]]
    every = [b.address for b in backends]
    ctx = mp.get_context("spawn")
    procs: list[Any] = []
    results: dict[str, TailClient] = {}
    started = time.monotonic()
    try:
        for backend in backends:
            backend.start()
        out = ctx.Queue()
        gos = {name: ctx.Event() for name in clients}
        load = {"rate": rate, "seconds": seconds, "deadline": deadline}
        for name in clients:
            proc = ctx.Process(
                target=_client_main,
                args=(name, fast, every, gos[name], out, load, warmup, turn),
                daemon=True,
                name=f"tail-client-{name}",
            )
            proc.start()
            procs.append(proc)
        _collect(out, len(clients), 60.0, results)
        groups = [list(clients)] if together else [[name] for name in clients]
        for group in groups:
            for name in group:
                gos[name].set()
            if episode:  # the middle third stalls
                time.sleep(0.05 + seconds / 3)
                slow.stall(True)
                time.sleep(seconds / 3)
                slow.stall(False)
            _collect(out, len(group), seconds + deadline + 60.0, results)
    finally:
        end_children(procs, backends)
        reap_all()
    for name in clients:
        results.setdefault(name, TailClient(name, error="no result (timed out)"))
    return TailResult(scenario, {n: results[n] for n in clients}, time.monotonic() - started)


def _collect(out: Any, count: int, timeout: float, results: dict[str, TailClient]) -> None:
    """``count`` ready messages (before the load) or results (after), bounded."""
    deadline = time.monotonic() + timeout
    got = 0
    while got < count and (left := deadline - time.monotonic()) > 0:
        try:
            message = out.get(timeout=left)
        except Exception:
            break
        if message[0] == "result":
            results[message[1].name] = message[1]
        got += 1


def summary(client: TailClient) -> str:
    """p50/p99 and failures, as a table cell."""
    if client.error:
        return f"ERROR {client.error}"
    p50, p99 = client.p50 * 1000, client.p99 * 1000
    return f"p50 {p50:.1f} ms, p99 {p99:.1f} ms, failed {client.failed} of {client.sent}"
