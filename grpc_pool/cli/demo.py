"""``python -m grpc_pool demo``: a pool under load while its three servers restart one
after another, beside raw grpcio channels under the same load, in the same run."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any, TextIO

import grpc

from .._base.errors import NoChannelAvailable
from .._pool import Pool
from ..testing.echo import ECHO, EchoServer

SERVERS = 3
GRACE = 1.0  # each server's graceful stop: GOAWAY, then this long for calls in flight
DOWN = 0.5  # seconds each server stays down
RAW_TAG = ("x-demo-client", "raw")
_RR: dict[str, Any] = {"loadBalancingConfig": [{"round_robin": {}}]}
_RETRY: dict[str, Any] = {
    **_RR,
    "methodConfig": [
        {
            "name": [{"service": ECHO.split("/")[1]}],
            "retryPolicy": {
                "maxAttempts": 5,
                "initialBackoff": "0.05s",
                "maxBackoff": "0.5s",
                "backoffMultiplier": 2,
                "retryableStatusCodes": ["UNAVAILABLE"],
            },
        }
    ],
}


class _DemoServer(EchoServer):
    """An echo server that counts the pool's connections apart from the raw
    channels' (their RPCs carry the x-demo-client: raw header)."""

    def __init__(self) -> None:
        super().__init__()
        self.raw_peers: set[str] = set()

    def _seen(self, context: grpc.ServicerContext) -> None:
        if RAW_TAG in tuple(context.invocation_metadata()):
            with self._lock:
                self.raw_peers.add(context.peer())
            return
        super()._seen(context)


def _raw_channel(target: str, config: dict[str, Any]) -> grpc.Channel:
    options = [("grpc.service_config", json.dumps(config)), ("grpc.enable_retries", 1)]
    return grpc.insecure_channel(target, options=options)


def run_demo(
    seconds: float = 8.0, threads: int = 4, size: int = 4, out: TextIO = sys.stdout
) -> int:
    """Run the demo; return the exit code (0 when the pool recovered and served)."""
    servers = [_DemoServer().start() for _ in range(SERVERS)]
    target = "ipv4:" + ",".join(s.target for s in servers)
    outcomes: dict[str, Counter[str]] = {"pool": Counter(), "rr": Counter(), "rr_retry": Counter()}
    lock = threading.Lock()
    stop = threading.Event()
    pool = Pool(
        target,
        size=size,
        insecure=True,
        name="demo",
        backoff_initial=0.2,
        backoff_max=1.0,
        connect_timeout=5.0,
        retire_grace=1.0,
    )
    raws = {"rr": _raw_channel(target, _RR), "rr_retry": _raw_channel(target, _RETRY)}

    def record(client: str, kind: str) -> None:
        with lock:
            outcomes[client][kind] += 1

    def pool_call() -> None:
        pool.get_channel(timeout=0.5).unary_unary(ECHO)(b"hello", timeout=1.0)

    def raw_call(channel: grpc.Channel) -> Callable[[], None]:
        echo: Any = channel.unary_unary(ECHO)
        return lambda: echo(b"hello", timeout=1.0, metadata=(RAW_TAG,))

    def load(client: str, call: Callable[[], None]) -> None:
        while not stop.is_set():
            try:
                call()
                kind = "ok"
            except NoChannelAvailable:
                kind = "no channel"
            except grpc.RpcError as exc:
                kind = exc.code().name
            record(client, kind)
            if kind != "ok":
                stop.wait(0.05)

    recovered: list[float] = []

    def watch_recovery() -> None:  # woken by the writer's publishes, no sampling delay
        try:
            pool.wait_ready(timeout=10.0, min_ready=size)
            recovered.append(time.monotonic())
        except Exception:  # reported below as "did not recover"
            pass

    recovery = threading.Thread(target=watch_recovery, name="demo-recovery")
    live = out.isatty()
    recovered_after: float | None = None
    workers: list[threading.Thread] = []
    try:
        pool.wait_ready(timeout=10.0, min_ready=size)
        for channel in raws.values():
            grpc.channel_ready_future(channel).result(timeout=10.0)
        print(
            f"{SERVERS} servers on {target}; {pool!r}; beside it raw grpcio channels"
            f" (round_robin, round_robin + retryPolicy) over the same addresses;"
            f" {threads} threads each for {seconds:g}s",
            file=out,
        )
        calls = {"pool": pool_call, **{k: raw_call(c) for k, c in raws.items()}}
        workers = [
            threading.Thread(target=load, args=(client, call), name=f"demo-{client}-{i}")
            for client, call in calls.items()
            for i in range(threads)
        ]
        started = time.monotonic()
        for w in workers:
            w.start()
        # Restarts at 20%, 40%, 60% of the run (each when the one before is back).
        due = [started + seconds * (0.2 + 0.2 * i) for i in range(SERVERS)]
        back_up_at = 0.0
        while (now := time.monotonic()) < started + seconds or due:
            if due and now >= due[0]:
                due.pop(0)
                server = servers[SERVERS - len(due) - 1]
                message = (
                    f"-- restarting server {server.target} (graceful stop, {DOWN:g} s down) --"
                )
                print(f"\n{message}" if live else message, file=out)
                server.stop(grace=GRACE)
                time.sleep(DOWN)
                server.start()
                back_up_at = time.monotonic()
                if not due:
                    recovery.start()
            # Read the clock again: a restart above took time since `now`.
            _status_line(pool, outcomes, lock, time.monotonic() - started, out, live)
            time.sleep(0.25 if live else 1.0)
        stop.set()
        for w in workers:
            w.join(5.0)
        recovery.join(12.0)
        if recovered:
            recovered_after = max(0.0, recovered[0] - back_up_at)
        stats = pool.stats()
    finally:
        stop.set()
        for w in workers:
            if w.ident is not None:
                w.join(5.0)
        pool.close(grace=2.0)
        for channel in raws.values():
            channel.close()
        for server in servers:
            server.stop()
    print("" if not live else "\n", end="", file=out)
    print(
        f"summary: {SERVERS} servers restarted one after another, the same load on each client",
        file=out,
    )
    for client, label in (
        ("pool", "RPCs ok:"),
        ("rr", "raw grpcio round_robin, RPCs ok:"),
        ("rr_retry", "raw grpcio round_robin + retryPolicy, RPCs ok:"),
    ):
        counts = outcomes[client]
        failed = sum(n for k, n in counts.items() if k != "ok")
        kinds = " ".join(f"{k}={n}" for k, n in sorted(counts.items()) if k != "ok")
        print(f"  {label} {counts['ok']}  failed: {failed}  {kinds}".rstrip(), file=out)
    print(f"  reconnects: {stats.reconnects}", file=out)
    # Each slot is its own TCP connection, replaced when lost: the servers count
    # distinct client ip:port pairs of the pool's RPCs.
    peers = sum(len(s.peers) for s in servers)
    why = (
        f"{size} slots, one each at the start, and one per reconnect"
        if peers == size + stats.reconnects
        else "distinct client ip:port; each slot has its own, replaced when lost"
    )
    print(f"  TCP connections the servers saw from the pool: {peers} ({why})", file=out)
    if recovered_after is None:
        print("  pool did NOT recover to healthy", file=out)
        return 1
    print(f"  time to recover (last server up -> pool healthy): {recovered_after:.2f}s", file=out)
    return 0 if outcomes["pool"]["ok"] else 1


def _status_line(
    pool: Pool,
    outcomes: dict[str, Counter[str]],
    lock: threading.Lock,
    t: float,
    out: TextIO,
    live: bool,
) -> None:
    status = pool.status()
    with lock:
        cells = {
            client: (counts["ok"], sum(n for k, n in counts.items() if k != "ok"))
            for client, counts in outcomes.items()
        }
    line = (
        f"t={t:5.1f}s  {status.state:<8} ready={status.current_size}/{status.expected_size}"
        f"  ok={cells['pool'][0]} failed={cells['pool'][1]}"
        f"  | raw rr failed={cells['rr'][1]}  rr+retry failed={cells['rr_retry'][1]}"
    )
    print(f"\r{line}   " if live else line, end="" if live else "\n", file=out, flush=True)
