"""``python -m grpc_pool check TARGET``: is a gRPC server reachable and healthy?

Connects a pool of ``--size`` channels (each its own TCP connection), waits for
them to be ready with a progress display, then sends one
``grpc.health.v1.Health/Check`` over each ready channel and prints, per slot: its
state, channel id, how long it has been connected, the health answer, the
round-trip time of the check, the answer's detail and the slot's last connection
error. A server without the health service answers UNIMPLEMENTED: labelled "no
health service" and, unless ``--health`` names a service, counted as healthy once
connected (as gRPC's client health checking does), never as a check that passed.

Without ``--insecure`` against a plaintext server every connection fails its TLS
handshake: once every slot has, the wait ends there (not at ``--timeout``) with a
hint to try ``--insecure``.

Exit status: 0 healthy (every slot ready, every check SERVING), 1 not healthy
(degraded, down, NOT_SERVING, timeout), 2 a usage error. Usable as a container
readiness probe, e.g. ``grpc-pool check --insecure 127.0.0.1:50051 --timeout 3``.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
import threading
import time
from dataclasses import dataclass
from typing import NoReturn, TextIO

from .._base.errors import GrpcPoolError, InvalidConfig
from .._cli_env import program_name
from .._config.validate import check_target
from .._pool import Pool
from .._readers.hints import port_hint, tls_hint
from .._readers.stats import SlotStats
from .._workers.health import HealthCheck

__all__ = ["check_arguments", "check_command", "run_check"]

PROG = f"{program_name()} check"
DEFAULT_SIZE = 2
DEFAULT_TIMEOUT = 10.0
MAX_SIZE = 64
# A health check may take at least this long even when the wait for ready used
# up (nearly) all of --timeout.
_MIN_CHECK_TIMEOUT = 1.0


def check_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Connect a pool to TARGET, wait for it to be ready, health-check every "
        "channel and print per-slot status. Exit 0 when healthy, 1 when not "
        "(degraded, down, NOT_SERVING or timeout), 2 on a usage error."
    )
    # TARGET is parsed as optional so that its absence gets our own message; the
    # usage line shows it as what it is: required.
    parser.usage = (
        "%(prog)s TARGET [--insecure | --tls] [--size N] [--health SERVICE] [--timeout S]"
    )
    # Numbers and the target are parsed in check_command, not by argparse: a bad
    # value is then one line on stderr instead of a usage block.
    parser.add_argument(
        "target",
        nargs="?",
        metavar="TARGET",
        help="host:port, or a gRPC URI such as dns:///host:port or unix:///path",
    )
    parser.add_argument(
        "--tls", action="store_true", help="TLS with the system's root certificates (default)"
    )
    parser.add_argument("--insecure", action="store_true", help="plaintext (no TLS)")
    parser.add_argument(
        "--size",
        metavar="N",
        default=str(DEFAULT_SIZE),
        help=f"channels (TCP connections) to open and check, 1..{MAX_SIZE} (default "
        f"{DEFAULT_SIZE})",
    )
    parser.add_argument(
        "--health",
        metavar="SERVICE",
        default=None,
        help="service name to ask grpc.health.v1.Health/Check about; it must answer "
        "SERVING. Default: the server as a whole (''), where a server without the "
        "health service counts as healthy once connected",
    )
    parser.add_argument(
        "--timeout",
        metavar="S",
        default=str(DEFAULT_TIMEOUT),
        help=f"seconds to wait for every channel to be ready and checked (default "
        f"{DEFAULT_TIMEOUT:g})",
    )


def check_command(args: argparse.Namespace) -> int:
    target = _parse_target(args.target)
    if args.tls and args.insecure:
        _usage("--tls and --insecure exclude each other: choose one")
    size = _parse_int("--size", args.size, 1, MAX_SIZE)
    timeout = _parse_seconds("--timeout", args.timeout)
    try:
        return run_check(
            target, size=size, insecure=args.insecure, service=args.health, timeout=timeout
        )
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


def _usage(message: str) -> NoReturn:
    raise SystemExit(f"{PROG}: error: {message}")  # main(): one line on stderr, exit 2


def _parse_target(value: str | None) -> str:
    if value is None or not value.strip():
        _usage("TARGET is required, e.g. 127.0.0.1:50051 (see --help)")
    try:
        return check_target(value)  # the check PoolConfig makes: one rule for targets
    except InvalidConfig as error:
        _usage(str(error).replace("target=", "TARGET ", 1))


def _parse_int(option: str, text: str, low: int, high: int) -> int:
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        _usage(f"{option} {text!r}: expected an integer {low}..{high}")
    assert value is not None
    return value


def _parse_seconds(option: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        _usage(f"{option} {text!r}: expected a number of seconds > 0")
    return value


@dataclass
class _Check:
    """The outcome of one health check over one channel."""

    slot: int
    status: str  # SERVING, NOT_SERVING, ... or a gRPC status code name
    rtt: float | None  # seconds; None when no answer came back
    detail: str = ""


def run_check(
    target: str,
    *,
    size: int = DEFAULT_SIZE,
    insecure: bool = False,
    service: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Check ``target``; print the report to ``out``; return the exit status (0 or 1)."""
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    started = time.monotonic()
    deadline = started + timeout
    mode = "insecure" if insecure else "tls"
    asked = "the server" if service is None else f"service {service!r}"
    # grpcio takes 'host' as 'host:443': said up front, and again if it fails.
    port = port_hint(target).partition(" (")[0]
    print(
        f"checking {target} ({mode}, {size} channels, health of {asked}"
        f"{'; ' + port if port else ''})",
        file=out,
        flush=True,
    )
    try:
        pool = Pool(
            target,
            size=size,
            insecure=insecure,
            name="check",
            connect_timeout=timeout,
            # A server that comes up during the wait is picked up within ~0.5 s.
            backoff_initial=0.1,
            backoff_max=0.5,
            retire_grace=0.0,
            status_interval=0.0,
        )
    except GrpcPoolError as error:  # e.g. a target gRPC refuses
        print(f"{PROG}: error: {error}", file=err)
        return 1
    try:
        handshakes_failed = _wait_ready(pool, deadline, started, out, insecure)
        checks = _health_checks(pool, service, deadline)
        stats = pool.stats()
    finally:
        pool.close(grace=0.0)
    _print_slots(stats.slots, checks, service, out)
    ready = stats.status.current_size
    failing = [c for c in checks.values() if not _passes(c, service)]
    elapsed = time.monotonic() - started
    if ready == size and not failing:
        print(
            f"healthy: {ready}/{size} channels ready, {_passed(checks)} ({elapsed:.2f}s)",
            file=out,
            flush=True,
        )
        return 0
    out.flush()
    hint = ""
    if ready == 0:
        errors = sorted({_cause(s.last_error) for s in stats.slots if s.last_error})
        why = f"; last error: {errors[0]}" if errors else ""
        reason = f"down: no channel ready after {timeout:g}s{why}"
        if handshakes_failed:
            reason = f"down: every channel failed its TLS handshake ({elapsed:.2f}s){why}"
        hint = _tls_hint(errors, insecure) or port
    elif ready < size:
        reason = f"degraded: {ready}/{size} channels ready after {timeout:g}s"
    else:
        reason = f"unhealthy: {ready}/{size} channels ready"
    if failing:
        worst = failing[0]
        reason += (
            f", {len(failing)} health check(s) failed (slot {worst.slot}: {worst.status}"
            f"{': ' + worst.detail if worst.detail else ''})"
        )
    print(f"{PROG}: {target} {reason}", file=err, flush=True)
    if hint:
        print(f"hint: {hint}", file=err, flush=True)
    return 1


def _wait_ready(pool: Pool, deadline: float, started: float, out: TextIO, insecure: bool) -> bool:
    """Until every slot is ready, or every one failed a TLS handshake (True: waiting
    longer cannot help), or the deadline: a live line on a tty; otherwise a plain
    line when the ready count or the last error changes, and every 2 s."""
    live = out.isatty()
    shown, shown_at = "", 0.0
    while True:
        stats = pool.stats()
        now = time.monotonic()
        status = stats.status
        failed = not insecure and _all_failed_tls(stats.slots) and status.current_size == 0
        done = status.current_size >= status.expected_size or now >= deadline or failed
        ready = f"ready {status.current_size}/{status.expected_size}"
        errors = sorted({_cause(s.last_error) for s in stats.slots if s.last_error})
        error = f", last error: {_brief(errors[0], 70)}" if errors else ""
        if live:
            states: dict[str, int] = {}
            for s in stats.slots:
                states[s.state] = states.get(s.state, 0) + 1
            detail = "".join(f", {k} {n}" for k, n in sorted(states.items()) if k != "ready")
            line = f"\r{ready}{detail}  ({now - started:.1f}s){error}\033[K"
            print(line, end="\n" if done else "", file=out, flush=True)
        elif ready + error != shown or now - shown_at >= 2.0 or done:
            print(f"{ready}  ({now - started:.2f}s){error}", file=out, flush=True)
            shown, shown_at = ready + error, now
        if done:
            return failed
        time.sleep(min(0.1, max(0.0, deadline - now)))


def _all_failed_tls(slots: tuple[SlotStats, ...]) -> bool:
    """Every slot's last error is a failed TLS handshake (a plaintext server)."""
    return bool(slots) and all(
        s.last_error is not None and _tls_hint([_cause(s.last_error)], False) for s in slots
    )


def _health_checks(pool: Pool, service: str | None, deadline: float) -> dict[int, _Check]:
    """One Health/Check over each ready channel, all at once, within the deadline."""
    channels = pool._snapshot  # the ready channels, one per ready slot
    timeout = max(deadline - time.monotonic(), _MIN_CHECK_TIMEOUT)
    done_at: dict[int, float] = {}
    lock = threading.Lock()
    calls: list[tuple[int, float, HealthCheck]] = []
    for channel in channels:

        def finished(slot: int = channel.slot) -> None:  # on a gRPC thread
            with lock:
                done_at[slot] = time.monotonic()

        sent = time.monotonic()
        check = HealthCheck(channel, service or "", timeout)
        check.add_done_callback(finished)
        calls.append((channel.slot, sent, check))
    results: dict[int, _Check] = {}
    for slot, sent, check in calls:
        result = check.result(timeout=timeout + 1.0)
        with lock:
            answered = done_at.get(slot)
        no_answer = result.status == "DEADLINE_EXCEEDED"
        rtt = answered - sent if answered is not None and not no_answer else None
        results[slot] = _Check(slot, result.status, rtt, result.detail)
    return results


# A server without grpc.health.v1 answers the check UNIMPLEMENTED "Method not found!".
_NO_HEALTH_SERVICE = "UNIMPLEMENTED"


def _passed(checks: dict[int, _Check]) -> str:
    """What made a healthy verdict: checks answered SERVING, channels of a server
    with no health service (connected counts as healthy), or both."""
    serving = sum(c.status == "SERVING" for c in checks.values())
    absent = len(checks) - serving
    said = [f"{serving} health check{'s' if serving != 1 else ''} passed"] if serving else []
    if absent:
        where = "" if not serving else f" on {absent} channel{'s' if absent != 1 else ''}"
        said.append(f"no health service{where} (UNIMPLEMENTED): connected counts as healthy")
    return ", ".join(said)


def _passes(check: _Check, service: str | None) -> bool:
    if check.status == "SERVING":
        return True
    # Like gRPC's own client health checking: a server without the health service
    # is healthy once connected, unless a service was asked about explicitly.
    return service is None and check.status == _NO_HEALTH_SERVICE


def _print_slots(
    slots: tuple[SlotStats, ...], checks: dict[int, _Check], service: str | None, out: TextIO
) -> None:
    header = ("slot", "state", "channel", "connected", "health", "rtt", "health detail")
    rows = [(*header, "last error")]
    for s in slots:
        check = checks.get(s.slot)
        connected = f"{s.connected_for:.2f}s" if s.connected_for is not None else "-"
        health = check.status if check is not None else (s.health or "-")
        rtt = f"{check.rtt * 1000:.2f}ms" if check is not None and check.rtt is not None else "-"
        # The answer's detail is part of the health answer, not a connection error.
        detail = " ".join(check.detail.split()) if check is not None and check.detail else "-"
        if check is not None and check.status == _NO_HEALTH_SERVICE:
            counts = ", connected counts as healthy" if service is None else ""
            detail = f"no health service{counts} ({detail})"
        error = _cause(s.last_error) if s.last_error else "-"
        rows.append(
            (str(s.slot), s.state, s.channel_id or "-", connected, health, rtt, detail, error)
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        print("  ".join([*cells, row[-1]]).rstrip(), file=out)
    out.flush()


# "UNAVAILABLE: ipv4:127.0.0.1:50051: " before the cause: the address is the target.
_CODE_AND_ADDRESS = re.compile(r"^[A-Z_]+: (?:ipv4|ipv6|unix|unix-abstract|vsock):\S+: ")


def _brief(cause: str, limit: int) -> str:
    """A cause for the progress line: without code and address, cut to ``limit``."""
    text = _CODE_AND_ADDRESS.sub("", cause)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# gRPC's words around the cause of a failed connection, e.g. "TRANSIENT_FAILURE while
# connecting: failed to connect to all addresses; last error: UNAVAILABLE:
# ipv4:127.0.0.1:1: Connection refused": the cause is what follows the last of them.
_PREAMBLE = "failed to connect to all addresses; last error: "


def _cause(error: str) -> str:
    """A connection error on one line, gRPC's preamble dropped, the cause kept whole."""
    error = " ".join(error.split())
    return error.rpartition(_PREAMBLE)[2] if _PREAMBLE in error else error


def _tls_hint(errors: list[str], insecure: bool) -> str:
    """One hint when the errors look like TLS on one side and plaintext on the other."""
    return tls_hint(errors, insecure, to_plaintext="--insecure", to_tls="without --insecure")
