"""Command line: ``python -m grpc_pool demo``."""

from __future__ import annotations

import argparse
import os
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m grpc_pool", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo", help="pool against an embedded loopback echo server that restarts mid-run"
    )
    demo.add_argument("--seconds", type=float, default=8.0, help="run time (default 8)")
    demo.add_argument("--threads", type=int, default=4, help="load threads (default 4)")
    demo.add_argument("--size", type=int, default=4, help="pool size (default 4)")
    args = parser.parse_args(argv)
    if args.command == "demo":
        # gRPC core logs every GOAWAY at INFO; the demo causes them on purpose.
        os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
        from ._demo import run_demo

        if args.seconds <= 0 or args.threads < 1 or args.size < 1:
            parser.error("--seconds must be > 0, --threads and --size >= 1")
        return run_demo(seconds=args.seconds, threads=args.threads, size=args.size)
    return 2  # pragma: no cover


if __name__ == "__main__":
    sys.exit(main())
