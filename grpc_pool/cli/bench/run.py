"""The whole table: every scenario, one after the other, printed as markdown."""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from collections.abc import Callable
from typing import TextIO

import grpc

from .core import FULL, QUICK, ROWS, Row, format_table
from .fleet import fleet_row
from .fork import fork_rows
from .idle import idle_rows
from .micro import micro_rows
from .outliers import ejection_rows
from .restart import restart_row
from .rotation import rotation_row
from .rpc import channel_rows, rpc_rows, rpc_threads_row, stream_rows
from .server import bench_server
from .tail import tail_rows
from .writer import closing_row, publish_row


def run_bench(quick: bool = False, out: TextIO = sys.stdout) -> int:
    """Run every scenario, print the table; 1 if a scenario failed (a MISS is not a failure)."""
    settings = QUICK if quick else FULL
    started, load = time.monotonic(), _load()
    rows: list[Row] = []
    failed = 0
    with bench_server() as target:
        scenarios: list[tuple[str, Callable[[], list[Row]]]] = [
            ("1-2 get_channel, stub, threads", lambda: micro_rows(settings)),
            ("3 RPC overhead", lambda: rpc_rows(target, settings)),
            ("3e RPCs from 8 threads", lambda: [rpc_threads_row(target, settings)]),
            ("3f-g stub built once on pool.channel", lambda: channel_rows(target, settings)),
            ("4 stream limit", lambda: stream_rows(target, settings)),
            ("5a register -> publish", lambda: [publish_row(target, settings)]),
            ("5b writer retiring 100 channels", lambda: [closing_row(target, settings)]),
            ("5c restart -> healthy", lambda: [restart_row(settings)]),
            ("5d-e fork with a live pool", lambda: fork_rows(target, settings)),
            ("5f backend stop -> last pick", lambda: [rotation_row(settings)]),
            ("5g-5j idle pool: CPU, threads, fork", lambda: idle_rows(target, settings)),
            ("7a fleet simulation", lambda: [fleet_row(quick)]),
            ("8a-8c one backend failing every call", lambda: ejection_rows(settings)),
            ("9a-9f one slow backend", lambda: _tail(quick)),
        ]
        for title, scenario in scenarios:
            print(f"bench: {title} ...", file=sys.stderr, flush=True)
            try:
                rows += scenario()
            except Exception as exc:  # reported; the other scenarios still run
                failed += 1
                print(f"bench: {title} failed: {exc!r}", file=sys.stderr)
    rows = [dataclasses.replace(r, quick=quick) for r in rows]
    have = {r.key for r in rows}
    rows += [Row(key, None, "ERROR (see stderr)", "") for key in ROWS if key not in have]
    mode = "quick" if quick else "full"
    print(
        f"grpc_pool bench ({mode}): Python {sys.version.split()[0]}, grpcio {grpc.__version__},"
        f" {os.cpu_count()} CPUs; ratio = pool / baseline",
        file=out,
    )
    print(format_table(rows), file=out)
    # Other processes' load moves the multi-threaded rows most: say how busy the machine was.
    print(
        f"({time.monotonic() - started:.0f} s; load average {load} at start, {_load()} at end)",
        file=out,
    )
    return 1 if failed else 0


def _tail(quick: bool) -> list[Row]:
    """Rows 9a-9f; quick: 1 s per client, a smoke run with too few RPCs for a verdict."""
    rows = tail_rows(1.0 if quick else 12.0)
    return [dataclasses.replace(r, target=None) for r in rows] if quick else rows


def _load() -> str:
    return f"{os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else "n/a"
