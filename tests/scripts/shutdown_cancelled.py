"""Which RPCs does a grpcio server's graceful stop end CANCELLED? (issue 24, item 2)

    python tests/scripts/shutdown_cancelled.py [STOPS]

One grpcio server (64 handler threads), one raw grpcio channel, 16 threads of unary
RPCs; after 1 s, ``server.stop(grace=1.0)``. Prints, per stop, the outcomes and the
CANCELLED RPCs split by whether their handler ever ran, with when each started
relative to ``stop()``. Every handler returns at once, so the grace never runs out.

Measured (grpcio 1.85.1, 20 stops, 2 shared cores): 34 CANCELLED, none of whose
handlers ran, all started between 13 ms before and 3 ms after ``stop()``. The
Python server asks gRPC core for one call at a time; calls core had received but
not yet handed over when shutdown began are cancelled by core (the client sees
CANCELLED with no header, like a cancellation after its handler ran), while the
GOAWAY tells the client to send nothing more. No client can tell those from
RPCs that ran, or see them coming: raw round_robin + retryPolicy loses them too.
"""

from __future__ import annotations

import collections
import itertools
import sys
import threading
import time
from concurrent import futures

import grpc


def one_stop() -> str:
    seen: set[bytes] = set()
    lock = threading.Lock()

    def unary(request: bytes, context: grpc.ServicerContext) -> bytes:
        with lock:
            seen.add(request)
        return request

    executor = futures.ThreadPoolExecutor(64)
    server = grpc.server(executor)
    handler = grpc.unary_unary_rpc_method_handler(unary)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("p.P", {"U": handler}),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    grpc.channel_ready_future(channel).result(timeout=5)
    call = channel.unary_unary("/p.P/U")
    stop = threading.Event()
    outcomes: collections.Counter[str] = collections.Counter()
    unseen: list[float] = []
    ran: list[float] = []
    ids = itertools.count()
    stopped_at = [0.0]

    def load() -> None:
        while not stop.is_set():
            rid = str(next(ids)).encode()
            started = time.monotonic()
            try:
                call(rid, timeout=3)
                outcomes["OK"] += 1
            except grpc.RpcError as exc:
                outcomes[exc.code().name] += 1
                if exc.code() is grpc.StatusCode.CANCELLED:
                    with lock:
                        (ran if rid in seen else unseen).append(started - stopped_at[0])

    threads = [threading.Thread(target=load, daemon=True) for _ in range(16)]
    for thread in threads:
        thread.start()
    time.sleep(1.0)
    stopped_at[0] = time.monotonic()
    server.stop(grace=1.0).wait(5)
    time.sleep(0.2)
    stop.set()
    for thread in threads:
        thread.join(5)
    channel.close()
    executor.shutdown(wait=False)
    times = ", ".join(f"{t * 1000:+.1f} ms" for t in sorted(unseen))
    return (
        f"{dict(outcomes)}; CANCELLED whose handler never ran: {len(unseen)} ({times}),"
        f" whose handler ran: {len(ran)}"
    )


if __name__ == "__main__":
    for _ in range(int(sys.argv[1]) if len(sys.argv) > 1 else 5):
        print(one_stop(), flush=True)
