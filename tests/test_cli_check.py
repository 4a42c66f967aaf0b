"""``python -m grpc_pool check``: the real command in a subprocess against a real
echo server on loopback, and ``--help`` on every command.

No timing is asserted: every subprocess has a bound (``RUN_TIMEOUT``) only so
that a hang fails the test instead of blocking the suite.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest

import grpc_pool
from grpc_pool.cli import COMMANDS
from grpc_pool.testing.echo import SERVICE, EchoServer

RUN_TIMEOUT = 60
# A slot line of the table: slot number, state, channel id, connected, health, rtt.
SLOT_LINE = re.compile(r"^(\d+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)")


def run(
    *args: str, executable: list[str] | None = None, verbosity: str | None = "ERROR"
) -> subprocess.CompletedProcess[str]:
    """The command line in a subprocess; ``verbosity=None`` leaves GRPC_VERBOSITY
    unset, so the command's own quiet default applies."""
    command = executable or [sys.executable, "-m", "grpc_pool"]
    env = {k: v for k, v in os.environ.items() if k != "GRPC_VERBOSITY"}
    if verbosity is not None:
        env["GRPC_VERBOSITY"] = verbosity
    return subprocess.run(
        [*command, *args], capture_output=True, text=True, timeout=RUN_TIMEOUT, env=env
    )


# A gRPC core log line: "I1201 12:00:00.000000  123 file.cc:45] ..." (INFO, WARNING).
GRPC_CORE_LINE = re.compile(r"^[IW]\d{4} ", flags=re.MULTILINE)


def slot_lines(stdout: str) -> list[tuple[str, ...]]:
    return [m.groups() for line in stdout.splitlines() if (m := SLOT_LINE.match(line))]


def test_healthy_server_exits_0_with_a_line_per_slot(server: EchoServer) -> None:
    """Against a serving server: exit 0, one table line per slot, each ready, with
    its own channel, SERVING and a measured round trip, and a "healthy" verdict."""
    result = run("check", server.target, "--insecure", "--size", "3", "--timeout", "30")
    assert result.returncode == 0, result.stdout + result.stderr
    rows = slot_lines(result.stdout)
    assert [row[0] for row in rows] == ["0", "1", "2"], result.stdout
    for _slot, state, channel, connected, health, rtt in rows:
        assert state == "ready" and health == "SERVING", result.stdout
        assert channel != "-" and connected.endswith("s") and rtt.endswith("ms")
    assert len({row[2] for row in rows}) == 3  # three distinct channels
    assert "healthy: 3/3 channels ready" in result.stdout
    assert "Traceback" not in result.stderr


def test_named_service_must_be_serving(server: EchoServer) -> None:
    """--health SERVICE asks about that service: a known one passes (exit 0), one
    the server does not know fails (exit 1, NOT_FOUND named on stderr)."""
    known = run("check", server.target, "--insecure", "--health", SERVICE, "--timeout", "30")
    assert known.returncode == 0, known.stdout + known.stderr
    unknown = run("check", server.target, "--insecure", "--health", "no.such.Service")
    assert unknown.returncode == 1, unknown.stdout + unknown.stderr
    assert "NOT_FOUND" in unknown.stderr and "Traceback" not in unknown.stderr


def test_not_serving_exits_1(server: EchoServer) -> None:
    """Connected but answering NOT_SERVING: exit 1, the slots show NOT_SERVING and
    stderr has one verdict line, no traceback."""
    server.set_serving(False)
    result = run("check", server.target, "--insecure", "--size", "2", "--timeout", "30")
    assert result.returncode == 1, result.stdout + result.stderr
    rows = slot_lines(result.stdout)
    assert [row[4] for row in rows] == ["NOT_SERVING", "NOT_SERVING"], result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "NOT_SERVING" in lines[0], result.stderr


@pytest.fixture
def bare_server() -> Iterator[str]:
    """A real gRPC server on loopback with no service at all (no health service)."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop(None).wait(10)


def test_server_without_health_service(bare_server: str) -> None:
    """A server without grpc.health.v1: healthy once connected when no service is
    asked about (exit 0, health UNIMPLEMENTED), and said so: each slot's detail and
    the verdict say "no health service" and "connected counts as healthy", and no
    health check is counted as passed; asking with --health fails (exit 1)."""
    result = run("check", bare_server, "--insecure", "--timeout", "30")
    assert result.returncode == 0, result.stdout + result.stderr
    assert {row[4] for row in slot_lines(result.stdout)} == {"UNIMPLEMENTED"}
    # The answer's detail is shown as the health detail, not as a last error.
    header = next(line for line in result.stdout.splitlines() if line.startswith("slot "))
    assert "health detail" in header and header.endswith("last error"), result.stdout
    lines = [line for line in result.stdout.splitlines() if SLOT_LINE.match(line)]
    assert lines and all("Method not found!" in line for line in lines), result.stdout
    assert all(line.endswith(" -") for line in lines), result.stdout  # no last error
    label = "no health service, connected counts as healthy (Method not found!)"
    assert all(label in line for line in lines), result.stdout
    verdict = result.stdout.strip().splitlines()[-1]
    assert verdict.startswith(
        "healthy: 2/2 channels ready, no health service (UNIMPLEMENTED): connected counts as "
        "healthy ("
    ), verdict
    assert "passed" not in verdict, verdict
    strict = run("check", bare_server, "--insecure", "--health", "", "--timeout", "30")
    assert strict.returncode == 1, strict.stdout + strict.stderr
    assert "UNIMPLEMENTED" in strict.stderr


def test_nothing_listening_exits_1_after_the_timeout(dead_target: str) -> None:
    """Nothing listening: the command gives up after --timeout (the subprocess is
    bounded) with exit 1, a table of not-ready slots and their last error, and a
    one-line "down" verdict on stderr."""
    result = run("check", dead_target, "--insecure", "--timeout", "1.5")
    assert result.returncode == 1, result.stdout + result.stderr
    rows = slot_lines(result.stdout)
    assert len(rows) == 2 and all(row[1] != "ready" for row in rows), result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "down: no channel ready after 1.5s" in lines[0], result.stderr
    # The cause, at the end of gRPC's long message, is shown whole: verdict and table.
    assert lines[0].endswith("Connection refused"), result.stderr
    assert all(line.endswith("Connection refused") for line in result.stdout.splitlines()[-2:])


def test_a_target_without_a_port_says_443_is_assumed() -> None:
    """'localhost' (no port; grpcio dials localhost:443, where nothing listens): the
    first line and the failure's hint both say "no port given: 443 assumed"."""
    result = run("check", "localhost", "--insecure", "--timeout", "1", "--size", "1")
    assert result.returncode == 1, result.stdout + result.stderr
    first = result.stdout.splitlines()[0]
    assert first.endswith("health of the server; no port given: 443 assumed)"), first
    assert ":443: " in result.stdout  # grpcio's own error names the port
    assert result.stderr.strip().splitlines()[-1] == "hint: no port given: 443 assumed"


def test_tls_against_a_plaintext_server_is_not_healthy(server: EchoServer) -> None:
    """TLS (the default) to a plaintext server never becomes ready: exit 1, no
    traceback, one hint to try --insecure, and none of gRPC core's handshake lines
    (the command's quiet default, GRPC_VERBOSITY unset)."""
    result = run("check", server.target, "--tls", "--timeout", "1", verbosity=None)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "down:" in result.stderr and "Traceback" not in result.stderr
    hints = [line for line in result.stderr.splitlines() if line.startswith("hint: ")]
    assert len(hints) == 1 and "try --insecure" in hints[0], result.stderr
    assert not GRPC_CORE_LINE.search(result.stderr), result.stderr


def test_tls_to_plaintext_stops_at_the_first_failed_handshakes(server: EchoServer) -> None:
    """TLS to a plaintext server with a --timeout longer than the subprocess's own
    bound (RUN_TIMEOUT): once every slot has failed its handshake the command stops
    waiting and exits 1 with the TLS verdict and the --insecure hint (a command that
    waited for --timeout would be killed by the bound and fail the test)."""
    result = run("check", server.target, "--size", "2", "--timeout", str(RUN_TIMEOUT * 2))
    assert result.returncode == 1, result.stdout + result.stderr
    # grpcio 1.60 also prints gRPC core's own "E<date> ... Handshake failed" lines.
    verdicts = [line for line in result.stderr.splitlines() if "grpc_pool check:" in line]
    assert len(verdicts) == 1, result.stderr
    assert "down: every channel failed its TLS handshake" in verdicts[0], result.stderr
    hints = [line for line in result.stderr.splitlines() if line.startswith("hint: ")]
    assert len(hints) == 1 and "try --insecure" in hints[0], result.stderr
    assert "Traceback" not in result.stderr


@pytest.fixture
def closing_server() -> Iterator[str]:
    """A loopback TCP server that closes every connection once the client speaks,
    as a TLS server does with a plaintext HTTP/2 preface."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:  # timeout: look at stop again
                continue
            with conn:
                conn.settimeout(1.0)
                with contextlib.suppress(OSError):
                    conn.recv(1024)

    thread = threading.Thread(target=serve, name="closing-server")
    thread.start()
    yield f"127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    thread.join(5.0)
    listener.close()
    assert not thread.is_alive()


def test_plaintext_against_a_server_that_hangs_up_hints_at_tls(closing_server: str) -> None:
    """--insecure to a server that drops plaintext connections (a TLS server): exit 1
    and one hint to try without --insecure."""
    result = run("check", closing_server, "--insecure", "--timeout", "1", verbosity=None)
    assert result.returncode == 1, result.stdout + result.stderr
    hints = [line for line in result.stderr.splitlines() if line.startswith("hint: ")]
    assert len(hints) == 1 and "without --insecure" in hints[0], result.stderr
    assert not GRPC_CORE_LINE.search(result.stderr), result.stderr


@pytest.mark.parametrize(
    ("args", "mentions"),
    [
        ([], "TARGET is required"),
        (["127.0.0.1:1", "--tls", "--insecure"], "--tls and --insecure"),
        (["http://127.0.0.1:1"], "unknown scheme 'http'"),
        (["localhost:http"], "port 'http' is not 1..65535"),
        (["localhost:70000"], "port '70000' is not 1..65535"),
        (["local host:1"], "whitespace"),
        (["127.0.0.1:1", "--size", "0"], "--size"),
        (["127.0.0.1:1", "--size", "two"], "--size"),
        (["127.0.0.1:1", "--timeout", "-1"], "--timeout"),
        (["127.0.0.1:1", "--timeout", "inf"], "--timeout"),
    ],
)
def test_user_errors_are_one_line_exit_2(args: list[str], mentions: str) -> None:
    """A bad target, number or option combination: exit 2 and exactly one line on
    stderr naming the problem, no traceback, nothing on stdout."""
    result = run("check", *args)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and mentions in lines[0], result.stderr
    assert lines[0].startswith("python -m grpc_pool check: error: ")
    assert result.stdout == ""


@pytest.mark.parametrize("command", [None, *(name for name, *_ in COMMANDS)])
def test_help_on_every_command(command: str | None) -> None:
    """`--help` works on the top level and on every registered command: exit 0, usage
    on stdout, nothing on stderr."""
    result = run(*([command] if command else []), "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: python -m grpc_pool")
    assert result.stderr == ""
    if command is None:
        for name, *_ in COMMANDS:
            assert name in result.stdout
    assert "``" not in result.stdout  # plain text, no reST markup
    if command == "check":
        assert result.stdout.startswith("usage: python -m grpc_pool check TARGET ")


def test_version() -> None:
    """`--version` prints the program name and grpc_pool.__version__, exit 0."""
    result = run("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"python -m grpc_pool {grpc_pool.__version__}"


def test_check_is_registered_once() -> None:
    """`check` is one entry of the command table (next to demo and others)."""
    assert [name for name, *_ in COMMANDS].count("check") == 1
    assert "demo" in [name for name, *_ in COMMANDS]


def test_console_script() -> None:
    """The `grpc-pool` console script (pyproject [project.scripts]) runs the same CLI."""
    script = Path(sys.executable).with_name("grpc-pool")
    if not script.exists():
        pytest.skip(f"{script} not installed (pip install -e . creates it)")
    result = run("check", "--help", executable=[str(script)])
    assert result.returncode == 0, result.stderr
    assert "--health SERVICE" in result.stdout
    assert result.stdout.startswith("usage: grpc-pool check TARGET")  # its own name


def test_quiet_grpc_default_is_for_the_command_line_only() -> None:
    """An application importing grpc_pool keeps gRPC's own logging defaults (no
    GRPC_VERBOSITY set for it); the command line sets ERROR unless the user set one."""
    probe = "import os, grpc_pool; print(os.environ.get('GRPC_VERBOSITY'))"
    env = {k: v for k, v in os.environ.items() if k != "GRPC_VERBOSITY"}
    library = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=RUN_TIMEOUT, env=env
    )
    assert library.stdout.strip() == "None", library.stderr
    from grpc_pool import _cli_env

    assert _cli_env.QUIET_GRPC_VERBOSITY == "ERROR"
    assert not _cli_env.is_command_line()  # pytest is not the command line


def test_import_grpc_pool_loads_no_cli_module() -> None:
    """The library a user imports carries no command-line tool: ``import grpc_pool``
    imports no ``grpc_pool.cli`` module (only ``python -m grpc_pool`` does)."""
    probe = (
        "import grpc_pool, sys;"
        " print(sorted(m for m in sys.modules if m.startswith('grpc_pool.cli')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=RUN_TIMEOUT
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", result.stdout


def test_the_users_grpc_verbosity_wins(server: EchoServer) -> None:
    """GRPC_VERBOSITY=INFO set by the user is kept: gRPC core's handshake lines show."""
    result = run("check", server.target, "--tls", "--timeout", "1", verbosity="INFO")
    assert result.returncode == 1, result.stdout + result.stderr
    assert GRPC_CORE_LINE.search(result.stderr), result.stderr
