"""A real fleet on loopback (issue 23): pools in several client processes over echo
backends on 127.0.0.2.. (one port, one address each) behind dnsmasq, scaling 4 -> 8
-> 4 under load, beside raw grpcio ``round_robin`` over the same DNS name.

    run = run_fleet(out_for=10.0, drain=4.0)
    run.print()            # shares over time: connections and RPCs
    run.failed("pool")     # failed RPCs (and ``"rr"``)

Scale-out: the 4 new backends already serve; the DNS answer gains them (hosts file +
SIGHUP). Graceful scale-in: the answer loses them; once no pool holds a connection to
them (and at least ``drain`` seconds later) they get SIGTERM (``server.stop(grace)``:
GOAWAY, calls in flight finish). Each backend records
the request ids it served: a request id carries its client kind and the second it was
sent in, so the RPCs per backend over time come from the servers themselves. The
connections per backend come from each pool's ``stats().backends`` (sampled every
``SAMPLE`` s in every client process and summed).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import shutil
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from grpc_pool.testing.deploy.dnsmasq import free_port
from grpc_pool.testing.deploy.harness import Backend, Dns, end_children, reap_all

NAME = "svc.test"
OLD = [f"127.0.0.{i}" for i in range(2, 6)]
NEW = [f"127.0.0.{i}" for i in range(6, 10)]
SAMPLE = 0.5  # seconds between connection samples, and the time buckets' length
GAP = 0.02  # seconds between one load thread's RPCs (light load)
WAIT_LIMIT = 20.0  # seconds the parent waits for the pools to reach or leave NEW


@dataclass
class FleetRun:
    """What a fleet run saw: per time bucket and backend host, the pools' connections
    and the RPCs each backend served for the pools and for raw round_robin."""

    processes: int
    pools: int
    size: int
    fleet_index: bool
    events: list[tuple[float, str]] = field(default_factory=list)
    connections: dict[int, Counter[str]] = field(default_factory=dict)  # bucket -> host
    rpcs: dict[str, dict[int, Counter[str]]] = field(default_factory=dict)  # kind -> bucket
    ok: Counter[str] = field(default_factory=Counter)
    failures: dict[str, list[tuple[float, str, str]]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def failed(self, kind: str) -> int:
        return len(self.failures.get(kind, []))

    def when(self, label: str) -> float:
        return next(t for t, e in self.events if e == label)

    def new_share(self, counts: Counter[str]) -> float | None:
        """The new backends' part of ``counts`` (None when empty)."""
        total = sum(counts.values())
        return sum(counts[h] for h in NEW) / total if total else None

    def connection_share_after(self, start: float, end: float) -> list[tuple[float, float]]:
        """(seconds after ``start``, new backends' share of connections) per bucket."""
        out = []
        for bucket in sorted(self.connections):
            t = bucket * SAMPLE
            share = self.new_share(self.connections[bucket])
            if start <= t < end and share is not None:
                out.append((t - start, share))
        return out

    def time_to_share(self, share: float) -> float | None:
        """Seconds from the scale-out until the new backends held ``share`` of the
        connections (None: never, before the scale-in)."""
        out, back = self.when("scale-out"), self.when("scale-in (DNS)")
        for t, got in self.connection_share_after(out, back):
            if got >= share:
                return t
        return None

    def table(self) -> str:
        """Per second: the phase, connections per backend (old | new), the new
        backends' share of pool connections, pool RPCs and raw round_robin RPCs."""
        lines = [
            "| t (s) | phase | pool connections per backend, old \\| new |"
            " new: connections | new: pool RPCs | new: round_robin RPCs |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        per_second = int(1 / SAMPLE)
        last = max(self.connections, default=0)
        for bucket in range(0, last + 1, per_second):
            t = bucket * SAMPLE
            phase = [e for when, e in self.events if when < t + 1]
            conns = self.connections.get(bucket + per_second - 1) or self.connections.get(
                bucket, Counter()
            )
            cells = " ".join(str(conns[h]) for h in OLD) + " \\| "
            cells += " ".join(str(conns[h]) for h in NEW)
            shares = [self.new_share(conns)]
            for kind in ("pool", "rr"):
                rpcs = Counter[str]()
                for b in range(bucket, bucket + per_second):
                    rpcs.update(self.rpcs.get(kind, {}).get(b, Counter()))
                shares.append(self.new_share(rpcs))
            text = ["-" if s is None else f"{s:.0%}" for s in shares]
            lines.append(
                f"| {t:.0f} | {phase[-1] if phase else ''} | {cells} | " + " | ".join(text) + " |"
            )
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        """Shares over time, for ``benchmarks/chart.py loopback``: per bucket (seconds
        since the load started), the new backends' share of the pools' connections (at
        the bucket's end: its last samples), of the pools' RPCs and of raw round_robin's
        RPCs (at the bucket's middle: sent during it)."""

        def series(buckets: dict[int, Counter[str]], at: float) -> list[tuple[float, float]]:
            shares = ((b * SAMPLE + at, self.new_share(c)) for b, c in sorted(buckets.items()))
            return [(t, s) for t, s in shares if s is not None]

        return {
            "processes": self.processes,
            "pools": self.pools,
            "size": self.size,
            "fleet_index": self.fleet_index,
            "events": self.events,
            "connections": series(self.connections, SAMPLE),
            "pool RPCs": series(self.rpcs.get("pool", {}), SAMPLE / 2),
            "round_robin RPCs": series(self.rpcs.get("rr", {}), SAMPLE / 2),
            "failed": {kind: self.failed(kind) for kind in ("pool", "rr")},
        }

    def print(self) -> None:
        mode = "fleet_index" if self.fleet_index else "random subsets"
        print(
            f"\nfleet on loopback: {self.processes} processes x {self.pools} pools of"
            f" {self.size} ({mode}) + 1 raw round_robin channel per process; backends"
            f" {OLD[0]}..{OLD[-1]} then +{NEW[0]}..{NEW[-1]} (fair share of the new: 50%)"
        )
        for when, event in self.events:
            print(f"  [{when:5.1f}s] {event}")
        print(self.table())
        for kind in ("pool", "rr"):
            print(f"  {kind}: ok={self.ok[kind]} failed={self.failed(kind)}", end="")
            print(f" {Counter(c for _, c, _ in self.failures.get(kind, [])).most_common(3)}")
        ninety = self.time_to_share(0.45)
        print(f"  new backends at >= 90% of their fair share {ninety} s after the scale-out")
        for error in self.errors:
            print(f"  error: {error}")


def _client(
    index: int,
    target: str,
    pools: int,
    size: int,
    fleet_index: bool,
    go: Any,
    stop: Any,
    t0: Any,
    out: Any,
    on_new: Any,
) -> None:
    """One client process: ``pools`` pools and one raw round_robin channel, one load
    thread each; samples its pools' connections per backend; reports at the end."""
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    import grpc

    import grpc_pool
    from grpc_pool.testing.deploy.backend import UNARY
    from grpc_pool.testing.deploy.load import FAST_DNS, RR_CONFIG

    made: list[grpc_pool.Pool] = []
    raw = grpc.insecure_channel(target, options=[("grpc.service_config", RR_CONFIG), FAST_DNS])
    ok: Counter[str] = Counter()
    failures: list[tuple[str, float, str, str]] = []
    samples: list[tuple[float, dict[str, int]]] = []
    try:
        for j in range(pools):
            made.append(
                grpc_pool.Pool(
                    target,
                    size=size,
                    insecure=True,
                    name=f"c{index}-p{j}",
                    resolve_interval=1.0,
                    fleet_index=index * pools + j if fleet_index else None,
                )
            )
        for pool in made:
            pool.wait_ready(timeout=20, min_ready=size)
        grpc.channel_ready_future(raw).result(timeout=20)
        out.put(("ready", index))
        go.wait(60)
        start = t0.value

        def load(kind: str, get: Any) -> None:
            n = 0
            while not stop.is_set():
                now = time.monotonic() - start
                rid = f"{kind}.{int(now / SAMPLE)}.{index}.{n}"
                n += 1
                try:
                    get().unary_unary(UNARY)(rid.encode(), timeout=5)
                    ok[kind] += 1
                except grpc.RpcError as exc:
                    failures.append((kind, now, str(exc.code()), str(exc.details())[:120]))
                time.sleep(GAP)

        threads = [
            threading.Thread(target=load, args=("pool", p.get_channel), daemon=True) for p in made
        ]
        threads.append(threading.Thread(target=load, args=("rr", lambda: raw), daemon=True))
        for thread in threads:
            thread.start()
        while not stop.wait(SAMPLE / 2):
            total: Counter[str] = Counter()
            for pool in made:
                for b in pool.stats().backends:
                    total[b.address.rsplit(":", 1)[0]] += b.connections
            samples.append((time.monotonic() - start, dict(total)))
            on_new[index] = sum(total[h] for h in NEW)  # the parent waits on it
        for thread in threads:
            thread.join(10)
        out.put(("result", index, dict(ok), failures, samples, None))
    except BaseException as exc:  # reported, never a hung parent
        out.put(("result", index, dict(ok), failures, samples, repr(exc)))
    finally:
        for pool in made:
            pool.close(grace=1)
        raw.close()


def _start_all(backends: Sequence[Backend]) -> None:
    """Start the backends side by side (each start waits for its READY line)."""
    errors: list[BaseException] = []

    def start(b: Backend) -> None:
        try:
            b.start()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(b,)) for b in backends]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    if errors:
        raise errors[0]


def run_fleet(
    processes: int = 4,
    pools: int = 6,
    size: int = 2,
    *,
    fleet_index: bool = False,
    lead: float = 3.0,
    out_for: float = 10.0,
    drain: float = 4.0,
    tail: float = 3.0,
) -> FleetRun:
    """Backends, DNS, client processes; then: ``lead`` s at 4 backends, scale-out to 8,
    ``out_for`` s (at least until a pool reached a new backend), the answer back to 4,
    ``drain`` s (at least until no pool holds a connection to a new backend), SIGTERM to
    the 4 new ones, ``tail`` s. Raises DnsUnavailable without dnsmasq."""
    work = tempfile.mkdtemp(prefix="grpc-pool-fleet-")
    port = free_port("127.0.0.2")
    lifetime = lead + out_for + drain + tail + 60
    backends = [
        Backend(port, host=h, record=os.path.join(work, h), grace=1.0, lifetime=lifetime)
        for h in OLD + NEW
    ]
    run = FleetRun(processes, pools, size, fleet_index)
    dns: Dns | None = None
    ctx = mp.get_context("spawn")
    procs: list[Any] = []
    go, stop, q, t0 = ctx.Event(), ctx.Event(), ctx.Queue(), ctx.Value("d", 0.0)
    on_new = ctx.Array("i", processes)  # per client: its pools' connections to NEW
    try:
        dns = Dns({NAME: OLD})
        target = f"dns://127.0.0.1:{dns.port}/{NAME}:{port}"
        _start_all(backends)
        for i in range(processes):
            args = (i, target, pools, size, fleet_index, go, stop, t0, q, on_new)
            proc = ctx.Process(target=_client, args=args, daemon=True, name=f"fleet-client-{i}")
            proc.start()
            procs.append(proc)
        ready = 0
        for message in _messages(q, processes, 60):
            if message[0] != "ready":  # a client that failed before its ready
                run.errors.append(f"client {message[1]}: {message[5]}")
                break
            ready += 1
        if ready < processes:
            codes = [proc.exitcode for proc in procs]  # a crash sends nothing
            raise RuntimeError(
                f"{ready}/{processes} fleet clients ready: {run.errors}; exit codes {codes}"
            )
        start = time.monotonic()
        t0.value = start

        def event(label: str) -> None:
            run.events.append((time.monotonic() - start, label))

        go.set()
        event("4 backends")
        time.sleep(lead)
        dns.set({NAME: OLD + NEW})
        event("scale-out")
        _wait(lambda: sum(on_new[:]) > 0, WAIT_LIMIT)  # the first moves in
        time.sleep(max(0.0, start + lead + out_for - time.monotonic()))
        dns.set({NAME: OLD})
        event("scale-in (DNS)")
        back = time.monotonic()
        if not _wait(lambda: sum(on_new[:]) == 0, WAIT_LIMIT):
            run.errors.append(f"pools still on the new backends {WAIT_LIMIT} s after the DNS")
        time.sleep(max(0.0, back + drain - time.monotonic()))
        for b in backends[len(OLD) :]:
            b.term()
        event("SIGTERM new")
        time.sleep(tail)
        stop.set()
        event("stop")
        got = 0
        for message in _messages(q, processes, 30):
            got += 1
            _, index, ok, failures, samples, error = message
            run.ok.update(ok)
            for kind, when, code, details in failures:
                run.failures.setdefault(kind, []).append((when, code, details))
            latest: dict[int, dict[str, int]] = {}
            for when, counts in samples:
                latest[int(when / SAMPLE)] = counts
            for bucket, counts in latest.items():
                run.connections.setdefault(bucket, Counter()).update(counts)
            if error:
                run.errors.append(f"client {index}: {error}")
        if got < processes:
            run.errors.append(f"{processes - got} clients sent no result")
    finally:
        stop.set()
        end_children(procs, backends, join=15)
        if dns is not None:
            dns.stop()
        reap_all()
    _count_records(run, work)
    shutil.rmtree(work, ignore_errors=True)
    return run


def _messages(q: Any, count: int, limit: float) -> Iterator[tuple[Any, ...]]:
    """Up to ``count`` messages from the clients' queue within ``limit`` seconds."""
    deadline = time.monotonic() + limit
    for _ in range(count):
        try:
            yield q.get(timeout=max(0.1, deadline - time.monotonic()))
        except queue.Empty:
            return


def _wait(condition: Callable[[], bool], limit: float) -> bool:
    """Poll ``condition`` until it holds (True) or ``limit`` seconds pass (False)."""
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(SAMPLE / 5)
    return True


def _count_records(run: FleetRun, work: str) -> None:
    """RPCs per (kind, time bucket, backend host), from what each backend recorded."""
    rpcs: dict[str, dict[int, Counter[str]]] = defaultdict(dict)
    for host in os.listdir(work):
        with open(os.path.join(work, host)) as fh:
            for rid in fh.read().split():
                kind, bucket, _ = rid.split(".", 2)
                rpcs[kind].setdefault(int(bucket), Counter())[host] += 1
    run.rpcs = dict(rpcs)
