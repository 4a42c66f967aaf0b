"""Clients (what a scenario compares) and the load generator (what they run).

A client factory takes a target and returns ``(channel, close)``; ``CLIENTS`` names
them: ``pool`` (grpc_pool.insecure_channel, size 6, default settings),
``pool_retry`` (the same with ``retry=grpc_pool.RetryPolicy(...)``, when the pool has
it), ``rr_retry`` (a raw grpcio channel, ``round_robin`` + a ``retryPolicy`` on
UNAVAILABLE) and ``rr`` (raw ``round_robin``).
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import grpc

from .backend import BIDI, CLIENT_STREAM, SERVER_STREAM, SERVICE, UNARY

KINDS = ("unary", "server_stream", "client_stream", "bidi")

RETRY_CONFIG = json.dumps(
    {
        "loadBalancingConfig": [{"round_robin": {}}],
        "methodConfig": [
            {
                "name": [{"service": SERVICE}],
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
)
RR_CONFIG = json.dumps({"loadBalancingConfig": [{"round_robin": {}}]})
# grpcio re-resolves DNS at most every 30 s by default: a rolling update outruns it.
FAST_DNS = ("grpc.dns_min_time_between_resolutions_ms", 500)

Client = tuple[grpc.Channel, Callable[[], None]]


def raw_client(target: str, service_config: str) -> Client:
    options: list[tuple[str, Any]] = [
        ("grpc.service_config", service_config),
        ("grpc.enable_retries", 1),
        FAST_DNS,
    ]
    channel = grpc.insecure_channel(target, options=options)
    return channel, channel.close


def retry_policy() -> Any:
    """``grpc_pool.RetryPolicy`` for the echo methods (idempotent: an attempt that ran
    on a dying server may run again), on what a server's stop or crash leaves."""
    import grpc

    import grpc_pool

    codes = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)
    return grpc_pool.RetryPolicy(methods=(f"/{SERVICE}/",), codes=codes, max_attempts=4)


def pool_client(target: str, **options: Any) -> Client:
    import grpc_pool

    channel = grpc_pool.insecure_channel(target, size=options.pop("size", 6), **options)
    return channel, channel.close


def pool_retry_client(target: str) -> Client:
    return pool_client(target, retry=retry_policy())


CLIENTS: dict[str, Callable[[str], Client]] = {
    "pool": pool_client,
    "pool_retry": pool_retry_client,
    "rr_retry": lambda target: raw_client(target, RETRY_CONFIG),
    "rr": lambda target: raw_client(target, RR_CONFIG),
}

_ADDR = re.compile(r"(ipv[46]:)?(\[[0-9a-fA-F:.]+\]|\d+\.\d+\.\d+\.\d+):\d+")


def normalize(details: str | None) -> str:
    """Details with addresses replaced by ADDR: one key per kind of failure."""
    return _ADDR.sub("ADDR", details or "")


def _calls(channel: grpc.Channel, delay_ms: int) -> dict[str, Callable[[str, float], None]]:
    unary = channel.unary_unary(UNARY)
    server_stream = channel.unary_stream(SERVER_STREAM)
    client_stream = channel.stream_unary(CLIENT_STREAM)
    bidi = channel.stream_stream(BIDI)

    def first(rid: str) -> bytes:
        return f"{rid}:{delay_ms}".encode() if delay_ms else rid.encode()

    def messages(rid: str) -> Iterator[bytes]:
        yield first(rid)
        yield b"a"
        yield b"b"

    def do_unary(rid: str, timeout: float) -> None:
        unary(first(rid), timeout=timeout)

    def do_server_stream(rid: str, timeout: float) -> None:
        got = list(server_stream(first(rid), timeout=timeout))
        assert len(got) == 2, got

    def do_client_stream(rid: str, timeout: float) -> None:
        client_stream(messages(rid), timeout=timeout)

    def do_bidi(rid: str, timeout: float) -> None:
        got = list(bidi(messages(rid), timeout=timeout))
        assert len(got) == 3, got

    return {
        "unary": do_unary,
        "server_stream": do_server_stream,
        "client_stream": do_client_stream,
        "bidi": do_bidi,
    }


def _seen(exc: grpc.RpcError) -> bool:
    """The server sent its x-seen header: the RPC reached its handler."""
    try:
        return any(k == "x-seen" for k, _ in exc.initial_metadata() or ())  # type: ignore[attr-defined]
    except Exception:
        return False


def run_load(
    channel: grpc.Channel,
    stop: threading.Event,
    threads: int = 6,
    kinds: Sequence[str] = ("unary",),
    timeout: float = 2.0,
    prefix: str = "c",
    delay_ms: int = 0,
) -> tuple[int, list[dict[str, Any]]]:
    """RPCs from ``threads`` threads (kinds in turn over the threads) until ``stop``.

    Returns (ok count, failures: dicts of rid, kind, code, details, seen_md, t).
    Request ids are ``<prefix><n>``: the backends record the ids they received.
    """
    calls = _calls(channel, delay_ms)
    ok = [0] * threads
    failures: list[dict[str, Any]] = []
    lock = threading.Lock()
    counter = itertools.count()
    t0 = time.monotonic()

    def worker(i: int) -> None:
        kind = kinds[i % len(kinds)]
        call = calls[kind]
        while not stop.is_set():
            rid = f"{prefix}{next(counter)}"  # count() is atomic under the GIL
            try:
                call(rid, timeout)
                ok[i] += 1
            except grpc.RpcError as exc:
                seen = _seen(exc)
                record = {
                    "rid": rid,
                    "kind": kind,
                    "code": exc.code().name,  # type: ignore[attr-defined]
                    "details": normalize(exc.details()),  # type: ignore[attr-defined]
                    "seen_md": seen,
                    "t": round(time.monotonic() - t0, 3),
                }
                with lock:
                    failures.append(record)
            except Exception as exc:  # the harness's own error: counted, never hidden
                with lock:
                    failures.append(
                        {"rid": rid, "kind": kind, "code": "HARNESS", "details": repr(exc),
                         "seen_md": False, "t": round(time.monotonic() - t0, 3)}
                    )  # fmt: skip

    workers = [
        threading.Thread(target=worker, args=(i,), name=f"deploy-load-{i}", daemon=True)
        for i in range(threads)
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout + 30)
    return sum(ok), failures
