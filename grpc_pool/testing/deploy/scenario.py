"""A deploy scenario: backends (child processes), clients under load (one child
process each, all against the same events), the events, and what each client saw.

    result = run_scenario(rolling_restart, clients=("pool", "rr_retry"))
    result.print()
    result["pool"].unavailable()     # failures with code UNAVAILABLE
    result["pool"].preventable()     # failures that never reached a server (not CANCELLED)

Each backend records the request ids it received (``backend.py``), so every failed
RPC is known to have reached a server, and which one, or not.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import shutil
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .dnsmasq import free_port
from .harness import Backend, Dns, reap_all

# Broken connections: the RPC was (or may have been) on the wire when it went.
BROKEN = ("Socket closed", "Connection reset", "Broken pipe", "Cancelling all calls")
NAME = "svc.test"


@dataclass
class ClientResult:
    name: str
    ok: int
    failures: list[dict[str, Any]]
    reached: dict[str, set[str]]  # failed rid -> labels of the backends it reached
    error: str | None = None
    ok_by_kind: dict[str, int] = field(default_factory=dict)

    @property
    def failed(self) -> int:
        return len(self.failures)

    def of_kind(self, kind: str) -> ClientResult:
        """The same client's RPCs of one kind only."""
        return ClientResult(
            self.name,
            self.ok_by_kind.get(kind, 0),
            [f for f in self.failures if f["kind"] == kind],
            self.reached,
            self.error,
            {kind: self.ok_by_kind.get(kind, 0)},
        )

    def shutdown_cancelled(self) -> list[dict[str, Any]]:
        """CANCELLED RPCs that reached no handler: a grpcio server's stop() cancels
        the calls it had received but not yet handed to its application (its
        Python layer takes one at a time); no client can tell them from a
        cancellation after the handler ran (docs/reliability.md)."""
        return [f for f in self.cancelled() if not self.reached_any(f)]

    def by_kind(self) -> Counter[tuple[str, str]]:
        return Counter((f["code"], f["details"]) for f in self.failures)

    def unavailable(self) -> list[dict[str, Any]]:
        return [f for f in self.failures if f["code"] == "UNAVAILABLE"]

    def cancelled(self) -> list[dict[str, Any]]:
        return [f for f in self.failures if f["code"] == "CANCELLED"]

    def reached_any(self, failure: dict[str, Any]) -> bool:
        return bool(self.reached.get(failure["rid"])) or failure["seen_md"]

    def preventable(self) -> list[dict[str, Any]]:
        """Failures the client could have avoided: the RPC reached no server, and it is
        neither CANCELLED (a server's shutdown) nor a broken connection."""
        return [
            f
            for f in self.failures
            if not self.reached_any(f)
            and f["code"] != "CANCELLED"
            and not any(b in f["details"] for b in BROKEN)
        ]

    def not_explained_by(self, killed: set[str]) -> list[dict[str, Any]]:
        """Failures that neither reached a killed backend nor are a broken connection
        or CANCELLED: with an abrupt kill, only RPCs in flight on it may fail."""
        return [
            f
            for f in self.failures
            if not (self.reached.get(f["rid"], set()) & killed)
            and f["code"] != "CANCELLED"
            and not any(b in f["details"] for b in BROKEN)
        ]

    def lines(self) -> list[str]:
        out = [f"  {self.name:10s} ok={self.ok:6d} failed={self.failed}"]
        if self.error:
            out.append(f"      CLIENT ERROR: {self.error}")
        for (code, details), n in self.by_kind().most_common():
            mine = [f for f in self.failures if (f["code"], f["details"]) == (code, details)]
            reached = sum(self.reached_any(f) for f in mine)
            kinds = Counter(f["kind"] for f in mine)
            ts = sorted(f["t"] for f in mine)
            out.append(
                f"      {n:5d} (reached a server {reached}) {code}: {details[:120]}"
                f"  [{', '.join(f'{k} {v}' for k, v in sorted(kinds.items()))}]"
                f" t={ts[0]:.2f}..{ts[-1]:.2f}"
            )
        return out


@dataclass
class ScenarioResult:
    title: str
    clients: dict[str, ClientResult]
    events: list[str]
    killed: set[str]
    seconds: float
    target: str = ""

    def __getitem__(self, name: str) -> ClientResult:
        return self.clients[name]

    def print(self) -> None:
        print(f"\n== {self.title} ({self.seconds:.1f} s) target {self.target}")
        for line in self.events:
            print(f"  {line}")
        for client in self.clients.values():
            for line in client.lines():
                print(line)


@dataclass
class Deploy:
    """What an event function gets: the live backends and a way to start more."""

    backends: list[Backend]
    labels: dict[int, str]  # id(backend) -> label (its record file's name)
    workdir: str
    log: Callable[[str], None]
    backend_options: dict[str, Any]
    dns: Dns | None = None
    killed: set[str] = field(default_factory=set)

    def label(self, backend: Backend) -> str:
        return self.labels[id(backend)]

    def new_backend(self, host: str, port: int) -> Backend:
        label = f"b{len(self.labels)}"
        backend = Backend(
            port, host=host, record=os.path.join(self.workdir, label), **self.backend_options
        )
        self.labels[id(backend)] = label
        return backend

    def publish(self) -> None:
        assert self.dns is not None
        self.dns.set({NAME: [b.host for b in self.backends]})


# -- events ---------------------------------------------------------------------------
def rolling_restart(d: Deploy, down: float = 0.5, gap: float = 1.0, kill: bool = False) -> None:
    """Each backend in turn: SIGTERM (graceful, server.stop(grace)) or SIGKILL, down
    ``down`` s, back on the same port, ``gap`` s before the next."""
    for b in d.backends:
        d.log(f"{'SIGKILL' if kill else 'SIGTERM'} {b.address}")
        if kill:
            d.killed.add(d.label(b))
            b.kill()
        else:
            b.term()
        b.wait()
        time.sleep(down)
        b.start()
        d.log(f"up {b.address}")
        time.sleep(gap)


def kill_one(d: Deploy, down: float = 0.5, gap: float = 1.0) -> None:
    """SIGKILL the first backend under load, restart it after ``down`` s."""
    b = d.backends[0]
    d.log(f"SIGKILL {b.address}")
    d.killed.add(d.label(b))
    b.kill()
    b.wait()
    time.sleep(down)
    b.start()
    d.log(f"up {b.address}")
    time.sleep(gap)


def steady(d: Deploy, seconds: float = 4.0) -> None:
    """No event: the load runs (for server-side events such as max connection age)."""
    d.log(f"load for {seconds:g} s")
    time.sleep(seconds)


def rolling_update(d: Deploy, propagate: float = 1.0, gap: float = 1.0) -> None:
    """Kubernetes-like: a new backend on a new loopback address, added to DNS; the
    old one removed from DNS; ``propagate`` s (TTL 1 s, like a preStop sleep); then
    SIGTERM of the old one."""
    for old in list(d.backends):
        host = f"127.0.0.{len(d.labels) + 1}"  # the first backends use 127.0.0.1..N
        new = d.new_backend(host, old.port).start()
        d.backends.append(new)
        d.publish()
        d.log(f"dns +{host}")
        time.sleep(0.5)
        d.backends.remove(old)
        d.publish()
        d.log(f"dns -{old.host}")
        time.sleep(propagate)
        old.term()
        old.wait()
        d.log(f"SIGTERM done {old.address}")
        time.sleep(gap)


# -- the client processes -----------------------------------------------------------------
def _client_main(
    name: str, target: str, go: Any, stop: Any, out: Any, prefix: str, load: dict[str, Any]
) -> None:
    """One client in its own process: build, warm up, report ready, run until stop."""
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    import grpc

    from .load import CLIENTS, run_load

    try:
        client = CLIENTS[name](target)
        try:
            channel = client.channel
            if hasattr(channel, "pool"):
                channel.pool.wait_ready(timeout=15)
            else:
                grpc.channel_ready_future(channel).result(timeout=15)
            out.put(("ready", name))
            go.wait(60)
            done = threading.Event()

            def stop_later() -> None:
                stop.wait(120)
                done.set()

            threading.Thread(target=stop_later, daemon=True).start()
            ok, failures = run_load(client, done, prefix=prefix, **load)
        finally:
            client.close()
        out.put(("result", name, ok, failures, None))
    except BaseException as exc:  # reported, never a hung parent
        out.put(("result", name, {}, [], repr(exc)))


def run_scenario(
    event: Callable[..., None],
    clients: Sequence[str] = ("pool",),
    *,
    title: str = "",
    backends: int = 3,
    threads: int = 6,
    kinds: Sequence[str] = ("unary",),
    delay_ms: int = 0,
    timeout: float = 2.0,
    lead: float = 1.0,
    tail: float = 1.0,
    dns: bool = False,
    backend_options: dict[str, Any] | None = None,
    event_options: dict[str, Any] | None = None,
) -> ScenarioResult:
    """Start the backends and the clients, run ``event`` under load, collect.

    ``dns=True``: backends on 127.0.0.1.. behind a DNS server (dnsmasq.py),
    target ``dns://127.0.0.1:DNSPORT/svc.test:PORT``; raises DnsUnavailable without one.
    """
    backend_options = dict(backend_options or {})
    work = tempfile.mkdtemp(prefix="grpc-pool-deploy-")
    started = time.monotonic()
    events: list[str] = []

    def log(message: str) -> None:
        events.append(f"[{time.monotonic() - started:5.2f}s] {message}")

    d = Deploy([], {}, work, log, backend_options)
    port = free_port()
    for i in range(backends):
        host, p = (f"127.0.0.{i + 1}", port) if dns else ("127.0.0.1", free_port())
        d.backends.append(d.new_backend(host, p))
    ctx = mp.get_context("spawn")
    procs: list[Any] = []
    results: dict[str, ClientResult] = {}
    try:
        if dns:
            d.dns = Dns({NAME: [b.host for b in d.backends]})
            target = f"dns://127.0.0.1:{d.dns.port}/{NAME}:{port}"
        else:
            target = "ipv4:" + ",".join(b.address for b in d.backends)
        for b in d.backends:
            b.start()
        go, stop, q = ctx.Event(), ctx.Event(), ctx.Queue()
        load = {"threads": threads, "kinds": tuple(kinds), "timeout": timeout, "delay_ms": delay_ms}
        for i, name in enumerate(clients):
            proc = ctx.Process(
                target=_client_main,
                args=(name, target, go, stop, q, f"{i}-", load),
                daemon=True,
                name=f"deploy-client-{name}",
            )
            proc.start()
            procs.append(proc)
        pending = _collect(q, len(procs), 30.0, "ready", results)
        started = time.monotonic()
        log(f"{len(clients) - pending} clients ready; load starts")
        go.set()
        time.sleep(lead)
        event(d, **(event_options or {}))
        time.sleep(tail)
        stop.set()
        log("load stops")
        _collect(q, len(procs), 30.0 + timeout, "result", results)
    finally:
        stop_all = [*procs]
        for p in stop_all:
            p.join(5)
            if p.is_alive():
                p.kill()
                p.join(5)
        for b in d.backends:
            b.term()
        for b in d.backends:
            b.wait(5)
        if d.dns is not None:
            d.dns.stop()
        reap_all()
    seconds = time.monotonic() - started
    _attach_records(results, work)
    shutil.rmtree(work, ignore_errors=True)
    for name in clients:
        results.setdefault(name, ClientResult(name, -1, [], {}, "no result (timed out)"))
    return ScenarioResult(
        title or event.__name__,
        {n: results[n] for n in clients},
        events,
        d.killed,
        seconds,
        target,
    )


def _collect(
    q: Any, count: int, timeout: float, kind: str, results: dict[str, ClientResult]
) -> int:
    """Read ``count`` messages of ``kind`` (bounded); returns how many did not come."""
    deadline = time.monotonic() + timeout
    got = 0
    while got < count and (left := deadline - time.monotonic()) > 0:
        try:
            message = q.get(timeout=left)
        except Exception:
            break
        if message[0] == "result":
            _, name, ok, failures, error = message
            total = sum(ok.values()) if not error else -1
            results[name] = ClientResult(name, total, failures, {}, error, ok)
            got += kind == "result"
        else:
            got += message[0] == kind
    return count - got


def _attach_records(results: dict[str, ClientResult], workdir: str) -> None:
    failed = {f["rid"]: r for r in results.values() for f in r.failures}
    for label in os.listdir(workdir):
        with open(os.path.join(workdir, label)) as fh:
            for rid in fh.read().split():
                if rid in failed:
                    failed[rid].reached.setdefault(rid, set()).add(label)
