"""Clients (what a scenario compares) and the load generator (what they run).

A client factory takes a target and returns a ``Client``: a channel to wait
ready on, how to close it, and ``method(name)``, the multi-callable an RPC of
method ``name`` runs on (built once, or per RPC the way the API is used).
``CLIENTS`` names them:

- ``pool`` (``grpc_pool.insecure_channel``, size 6, default settings: a stub built
  once on it), ``pool.channel`` (a stub built once on ``pool.channel``),
  ``pool.get_channel`` (``pool.get_channel().unary_unary(...)`` per RPC),
  ``pool.stub`` (``pool.stub(EchoStub)`` per RPC): every API of the pool;
- ``pool_retry`` (``insecure_channel`` with ``retry=grpc_pool.RetryPolicy(...)``);
- ``rr_retry`` (a raw grpcio channel, ``round_robin`` + a ``retryPolicy`` on
  UNAVAILABLE) and ``rr`` (raw ``round_robin``).

Kinds (``HOWS``): ``unary`` (blocking), ``unary_with_call``, ``unary_future``,
``server_stream``, ``client_stream``, ``bidi``; ``KINDS`` is the first of each
RPC kind.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import grpc

from .backend import BIDI, CLIENT_STREAM, SERVER_STREAM, SERVICE, UNARY

KINDS = ("unary", "server_stream", "client_stream", "bidi")
HOWS = ("unary", "unary_with_call", "unary_future", "server_stream", "client_stream", "bidi")
# The pool's APIs, each a client of CLIENTS.
APIS = ("pool", "pool.channel", "pool.get_channel", "pool.stub")

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

# method name -> (the grpc.Channel factory, the full method)
METHODS = {
    "Unary": ("unary_unary", UNARY),
    "ServerStream": ("unary_stream", SERVER_STREAM),
    "ClientStream": ("stream_unary", CLIENT_STREAM),
    "Bidi": ("stream_stream", BIDI),
}


class EchoStub:
    """Shaped like a generated stub: every method's multi-callable built in __init__."""

    def __init__(self, channel: grpc.Channel) -> None:
        for name, (factory, method) in METHODS.items():
            setattr(self, name, getattr(channel, factory)(method))


@dataclass(frozen=True)
class Client:
    """channel: what ``wait_ready`` (or channel_ready_future) waits on; close:
    ends the client; method(name): the multi-callable of ``METHODS[name]`` an RPC
    runs on."""

    channel: Any
    close: Callable[[], None]
    method: Callable[[str], Any]


def built_once(channel: Any, close: Callable[[], None]) -> Client:
    """A stub built once on ``channel`` (as generated code and GAPIC do)."""
    stub = EchoStub(channel)
    return Client(channel, close, lambda name: getattr(stub, name))


def raw_client(target: str, service_config: str) -> Client:
    options: list[tuple[str, Any]] = [
        ("grpc.service_config", service_config),
        ("grpc.enable_retries", 1),
        FAST_DNS,
    ]
    channel = grpc.insecure_channel(target, options=options)
    return built_once(channel, channel.close)


def retry_policy() -> Any:
    """``grpc_pool.RetryPolicy`` for the echo methods (idempotent: an attempt that ran
    on a dying server may run again), on what a server's stop or crash leaves."""
    import grpc_pool

    codes = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)
    return grpc_pool.RetryPolicy(methods=(f"/{SERVICE}/",), codes=codes, max_attempts=4)


def pool_client(target: str, **options: Any) -> Client:
    """``grpc_pool.insecure_channel``: the pool as one channel that owns it."""
    import grpc_pool

    channel = grpc_pool.insecure_channel(target, size=options.pop("size", 6), **options)
    return built_once(channel, channel.close)


def pool_api_client(target: str, api: str) -> Client:
    """A ``grpc_pool.Pool`` used through ``api``: "channel", "get_channel" or "stub"."""
    import grpc_pool

    pool = grpc_pool.Pool(target, size=6, insecure=True)
    if api == "channel":
        return built_once(pool.channel, pool.close)
    if api == "get_channel":

        def method(name: str) -> Any:
            factory, full = METHODS[name]
            return getattr(pool.get_channel(), factory)(full)

        return Client(pool.channel, pool.close, method)
    return Client(pool.channel, pool.close, lambda name: getattr(pool.stub(EchoStub), name))


def pool_retry_client(target: str) -> Client:
    return pool_client(target, retry=retry_policy())


CLIENTS: dict[str, Callable[[str], Client]] = {
    "pool": pool_client,
    "pool.channel": lambda target: pool_api_client(target, "channel"),
    "pool.get_channel": lambda target: pool_api_client(target, "get_channel"),
    "pool.stub": lambda target: pool_api_client(target, "stub"),
    "pool_retry": pool_retry_client,
    "rr_retry": lambda target: raw_client(target, RETRY_CONFIG),
    "rr": lambda target: raw_client(target, RR_CONFIG),
}

_ADDR = re.compile(r"(ipv[46]:)?(\[[0-9a-fA-F:.]+\]|\d+\.\d+\.\d+\.\d+):\d+")


def normalize(details: str | None) -> str:
    """Details with addresses replaced by ADDR: one key per kind of failure."""
    return _ADDR.sub("ADDR", details or "")


def _calls(client: Client, delay_ms: int) -> dict[str, Callable[[str, float], None]]:
    method = client.method

    def first(rid: str) -> bytes:
        return f"{rid}:{delay_ms}".encode() if delay_ms else rid.encode()

    def messages(rid: str) -> Iterator[bytes]:
        yield first(rid)
        yield b"a"
        yield b"b"

    def do_unary(rid: str, timeout: float) -> None:
        method("Unary")(first(rid), timeout=timeout)

    def do_with_call(rid: str, timeout: float) -> None:
        _, call = method("Unary").with_call(first(rid), timeout=timeout)
        assert call.code() is grpc.StatusCode.OK

    def do_future(rid: str, timeout: float) -> None:
        method("Unary").future(first(rid), timeout=timeout).result(timeout=timeout + 5)

    def do_server_stream(rid: str, timeout: float) -> None:
        got = list(method("ServerStream")(first(rid), timeout=timeout))
        assert len(got) == 2, got

    def do_client_stream(rid: str, timeout: float) -> None:
        method("ClientStream")(messages(rid), timeout=timeout)

    def do_bidi(rid: str, timeout: float) -> None:
        got = list(method("Bidi")(messages(rid), timeout=timeout))
        assert len(got) == 3, got

    return {
        "unary": do_unary,
        "unary_with_call": do_with_call,
        "unary_future": do_future,
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
    client: Client,
    stop: threading.Event,
    threads: int = 6,
    kinds: Sequence[str] = ("unary",),
    timeout: float = 2.0,
    prefix: str = "c",
    delay_ms: int = 0,
) -> tuple[dict[str, int], list[dict[str, Any]]]:
    """RPCs from ``threads`` threads (kinds in turn over the threads) until ``stop``.

    Returns (RPCs that succeeded by kind, failures: dicts of rid, kind, code,
    details, seen_md, t).
    Request ids are ``<prefix><n>``: the backends record the ids they received.
    """
    calls = _calls(client, delay_ms)
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
                    "code": exc.code().name,
                    "details": normalize(exc.details()),
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
    done: dict[str, int] = dict.fromkeys(kinds, 0)
    for i, n in enumerate(ok):
        done[kinds[i % len(kinds)]] += n
    return done, failures
