"""An echo backend in a child process: ``python .../grpc_pool/testing/deploy/backend.py --port P``.

Run by path (it imports only grpc), so the load it serves is real and a SIGKILL is a
real crash. Service ``/deploy.Echo`` (raw bytes, no protobuf):

- ``Unary``: the request back.
- ``ServerStream``: the request back twice, the delay between the two.
- ``ClientStream``: reads every request, then the first one back after the delay.
- ``Bidi``: each request back as it arrives, then waits the delay before ending.

A request (the first message of a stream) is ``b"<id>"`` or ``b"<id>:<delay_ms>"``.
On receipt, before anything else, the handler appends ``<id>\\n`` to ``--record`` with
one unbuffered ``O_APPEND`` write (it survives a SIGKILL): what reached this server.
Then it sends initial metadata ``x-seen: <id>``.

``--slow-ms`` makes this backend slow: every handler waits that long before it
answers (a server stream: before its first message), and records ``<id>:cancelled``
if the client cancels meanwhile (what a hedge's loser looks like to a server).
SIGUSR1 makes it stall (``--stall-ms`` per request instead) until SIGUSR2.
``--fail`` makes it answer every call INTERNAL at once (a broken backend).

SIGTERM or SIGINT: ``server.stop(grace=--grace)`` (a GOAWAY; calls in flight get the
grace), then exit 0. ``--max-age-ms`` sets ``grpc.max_connection_age_ms`` (with
``--max-age-grace-ms``). Prints ``READY <port>`` once serving. Exits by itself after
``--lifetime`` seconds: it never outlives a test by much.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc

SERVICE = "deploy.Echo"
UNARY = f"/{SERVICE}/Unary"
SERVER_STREAM = f"/{SERVICE}/ServerStream"
CLIENT_STREAM = f"/{SERVICE}/ClientStream"
BIDI = f"/{SERVICE}/Bidi"


def parse(payload: bytes) -> tuple[str, float]:
    """``b"<id>:<delay_ms>"`` -> (id, delay in seconds)."""
    rid, _, delay = payload.decode().partition(":")
    return rid, (float(delay) / 1000.0 if delay else 0.0)


class Recorder:
    """Appends each request id to a file, one write each (atomic with O_APPEND)."""

    def __init__(self, path: str | None) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644) if path else None

    def seen(self, rid: str) -> None:
        if self._fd is not None:
            os.write(self._fd, f"{rid}\n".encode())


def build_server(
    port: int,
    host: str = "127.0.0.1",
    record: str | None = None,
    max_age_ms: int = 0,
    max_age_grace_ms: int = 1000,
    workers: int = 64,
    slow_ms: int = 0,
    stall: list[int] | None = None,
    fail: bool = False,
) -> tuple[grpc.Server, int]:
    rec = Recorder(record)
    stall = stall if stall is not None else [0]  # [ms]: set by a signal, read per call

    def enter(first: bytes, context: grpc.ServicerContext) -> float:
        rid, delay = parse(first)
        rec.seen(rid)
        if fail:
            context.abort(grpc.StatusCode.INTERNAL, "backend broken")
        context.send_initial_metadata((("x-seen", rid),))
        wait_ms = stall[0] or slow_ms
        if wait_ms:
            until = time.monotonic() + wait_ms / 1000.0
            while (left := until - time.monotonic()) > 0:
                if not context.is_active():
                    rec.seen(f"{rid}:cancelled")
                    break
                time.sleep(min(0.005, left))
        return delay

    def unary(request: bytes, context: grpc.ServicerContext) -> bytes:
        delay = enter(request, context)
        if delay:
            time.sleep(delay)
        return request

    def server_stream(request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        delay = enter(request, context)
        yield request
        if delay:
            time.sleep(delay)
        yield request

    def client_stream(requests: Iterator[bytes], context: grpc.ServicerContext) -> bytes:
        first = next(requests)
        delay = enter(first, context)
        for _ in requests:
            pass
        if delay:
            time.sleep(delay)
        return first

    def bidi(requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
        first = next(requests)
        delay = enter(first, context)
        yield first
        yield from requests
        if delay:
            time.sleep(delay)

    handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {
        "Unary": grpc.unary_unary_rpc_method_handler(unary),
        "ServerStream": grpc.unary_stream_rpc_method_handler(server_stream),
        "ClientStream": grpc.stream_unary_rpc_method_handler(client_stream),
        "Bidi": grpc.stream_stream_rpc_method_handler(bidi),
    }
    options: list[tuple[str, Any]] = [("grpc.so_reuseport", 0)]
    if max_age_ms:
        options += [
            ("grpc.max_connection_age_ms", max_age_ms),
            ("grpc.max_connection_age_grace_ms", max_age_grace_ms),
        ]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers), options=options)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise SystemExit(f"cannot bind {host}:{port}")
    return server, bound


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--record", default=None)
    ap.add_argument("--grace", type=float, default=1.0)
    ap.add_argument("--max-age-ms", type=int, default=0)
    ap.add_argument("--max-age-grace-ms", type=int, default=1000)
    ap.add_argument("--lifetime", type=float, default=120.0)
    ap.add_argument("--slow-ms", type=int, default=0)
    ap.add_argument("--stall-ms", type=int, default=0)
    ap.add_argument("--fail", action="store_true")
    a = ap.parse_args(argv)
    stall = [0]
    server, port = build_server(
        a.port,
        a.host,
        a.record,
        a.max_age_ms,
        a.max_age_grace_ms,
        slow_ms=a.slow_ms,
        stall=stall,
        fail=a.fail,
    )
    signal.signal(signal.SIGUSR1, lambda *_: stall.__setitem__(0, a.stall_ms))
    signal.signal(signal.SIGUSR2, lambda *_: stall.__setitem__(0, 0))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    server.start()
    print(f"READY {port}", flush=True)
    stop.wait(a.lifetime)  # the deadline: never outlive the test by much
    server.stop(grace=a.grace).wait(a.grace + 5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
