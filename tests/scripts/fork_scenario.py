"""Run by tests/test_fork.py in a fresh interpreter: fork with a live pool.

The echo server runs in another process (its threads must not be in this one:
any thread inside gRPC at fork time is what can crash a child). Prints one JSON
line with what happened. Usage: fork_scenario.py MODE TARGET
MODE: os_fork | multiprocessing | no_handlers, each optionally with "+resolver": the
pool then resolves through a resolver callable (so a resolver thread runs).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import sys
import time

import grpc_pool
from grpc_pool import _fork
from grpc_pool.testing.echo import PEER

CHILDREN = 4
RPCS = 5


def peers_of(pool: grpc_pool.Pool, n: int) -> set[str]:
    return {
        pool.get_channel(timeout=10).unary_unary(PEER)(b"", timeout=5).decode() for _ in range(n)
    }


def child_work(pool: grpc_pool.Pool) -> list[str]:
    """In a child: rebuild on first use, then RPCs on the child's own connections."""
    pool.wait_ready(timeout=10, min_ready=pool.status().expected_size)
    return sorted(peers_of(pool, RPCS * 2))


def _mp_task(_: int) -> list[str]:
    return child_work(POOL)


POOL: grpc_pool.Pool


def main() -> int:
    global POOL
    mode, target = sys.argv[1], sys.argv[2]
    mode, _, extra = mode.partition("+")
    if mode == "no_handlers":
        _fork.ENABLED = False
    resolver = (lambda name: [name]) if extra == "resolver" else None
    POOL = pool = grpc_pool.Pool(target, size=2, insecure=True, name="forked", resolver=resolver)
    pool.wait_ready(timeout=10, min_ready=2)
    parent_peers = peers_of(pool, 4)
    result: dict[str, object] = {"parent_peers": sorted(parent_peers), "children": []}
    fork_costs = []
    if mode in ("os_fork", "no_handlers"):
        for _ in range(CHILDREN):
            read_end, write_end = os.pipe()
            started = time.monotonic()
            pid = os.fork()
            if pid == 0:
                signal.alarm(30)  # a stuck child must not hang the test
                os.close(read_end)
                try:
                    payload = {"ok": True, "peers": child_work(pool)}
                except BaseException as exc:
                    payload = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
                os.write(write_end, json.dumps(payload).encode())
                pool.close()
                os._exit(0)
            fork_costs.append(time.monotonic() - started)
            os.close(write_end)
            with os.fdopen(read_end) as pipe:
                text = pipe.read()
            _, status = os.waitpid(pid, 0)
            child = json.loads(text) if text else {"ok": False, "error": "no report"}
            child["status"] = status
            result["children"].append(child)  # type: ignore[attr-defined]
            result.setdefault("parent_after", []).append(  # type: ignore[attr-defined]
                len(peers_of(pool, 2))
            )
    else:
        context = multiprocessing.get_context("fork")
        started = time.monotonic()
        with context.Pool(2) as workers:
            fork_costs.append(time.monotonic() - started)
            peers = workers.map(_mp_task, range(CHILDREN), chunksize=1)
        result["children"] = [{"ok": True, "status": 0, "peers": p} for p in peers]
        result["parent_after"] = [len(peers_of(pool, 2))]
    result["parent_status"] = pool.status().state
    result["fork_cost_max"] = max(fork_costs)
    pool.close()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
