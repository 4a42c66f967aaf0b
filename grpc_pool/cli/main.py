"""Command line: ``python -m grpc_pool COMMAND`` (also the ``grpc-pool`` script).

The package import that precedes this module sets the quiet gRPC core default
(``_cli_env``): grpc reads ``GRPC_VERBOSITY`` only when it is first imported.
A command's module is imported only when that command runs (``bench`` is the
largest), so ``check`` as a readiness probe starts fast.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import NoReturn

from .. import __version__
from .._cli_env import program_name
from .check import check_arguments, check_command

DESCRIPTION = """A thread-safe pool of grpcio client channels, each on its own TCP connection.
"%(prog)s COMMAND --help" shows the options of a command.
gRPC core logs only its errors here: GRPC_VERBOSITY=ERROR unless set.
"""

# Each command: (name, help, add_arguments(parser), run(args) -> exit code).
Command = tuple[
    str, str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]
]


def _demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seconds", type=float, default=8.0, help="run time (default 8)")
    parser.add_argument("--threads", type=int, default=4, help="load threads (default 4)")
    parser.add_argument("--size", type=int, default=4, help="pool size (default 4)")


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    if args.seconds <= 0 or args.threads < 1 or args.size < 1:
        raise SystemExit(
            f"{program_name()} demo: error: --seconds must be > 0, --threads and --size >= 1"
        )
    return run_demo(seconds=args.seconds, threads=args.threads, size=args.size)


def _bench_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--quick", action="store_true", help="fewer rounds: a smoke run of every row"
    )
    parser.add_argument(
        "--fleet",
        action="store_true",
        help="only the simulated fleet of pools (K -> 2K -> K backends), every placement",
    )
    parser.add_argument("--fleet-json", metavar="PATH", help="with --fleet: write its data here")
    parser.add_argument(
        "--deploy",
        action="store_true",
        help="only the deploy rows (6a-6b) and the failed RPCs per API and kind through"
        " a rolling restart, beside raw grpcio (backends in child processes, < 2 min)",
    )
    parser.add_argument(
        "--tail",
        action="store_true",
        help="only rows 9a-9f and their per-client table: one slow backend of four, every"
        " strategy and hedging beside raw round_robin and the fast-only reference (backends"
        " and clients in child processes, about 5 min)",
    )
    parser.add_argument(
        "--tail-json", metavar="PATH", help="with --tail: write every latency here (the chart)"
    )


def _bench(args: argparse.Namespace) -> int:
    if args.fleet:
        from .bench.fleet import print_fleet

        print_fleet(sys.stdout, pools=200 if args.quick else 1000, json_path=args.fleet_json)
        return 0
    if args.deploy:
        from .bench.deploy import run_deploy

        return run_deploy()
    if args.tail:
        from .bench.tail import run_tail_rows

        return run_tail_rows(json_path=args.tail_json)
    from .bench.run import run_bench

    return run_bench(quick=args.quick)


COMMANDS: list[Command] = [
    (
        "demo",
        "a pool under load through a rolling restart of 3 servers, beside raw channels",
        _demo_arguments,
        _demo,
    ),
    (
        "check",
        "is TARGET reachable and healthy? exit 0 or 1 (a readiness probe)",
        check_arguments,
        check_command,
    ),
    (
        "bench",
        "the pool against baselines measured in the same run",
        _bench_arguments,
        _bench,
    ),
]


class _Parser(argparse.ArgumentParser):
    """User errors as one line on stderr and exit 2 (``--help`` shows the usage)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def main(argv: list[str] | None = None) -> int:
    parser = _Parser(
        prog=program_name(),
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(
        dest="command", metavar="COMMAND", required=True, parser_class=_Parser
    )
    runners: dict[str, Callable[[argparse.Namespace], int]] = {}
    for name, help_text, add_arguments, run in COMMANDS:
        add_arguments(subparsers.add_parser(name, help=help_text, description=help_text))
        runners[name] = run
    args = parser.parse_args(argv)
    try:
        return runners[args.command](args)
    except SystemExit as exc:  # a user error: one line, exit 2, no traceback
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
            return 2
        raise
