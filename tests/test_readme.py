"""The README's two fresh-machine commands stay the ones CI and users run, and the
test command's output is the suite's own: gRPC core's INFO lines stay out."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHILD_TIMEOUT = 60


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    head = text[: text.index("## Why a pool")]
    return re.findall(r"```sh\n(.+?)\n```", head)


def test_readme_has_exactly_two_commands_near_the_top() -> None:
    """One command runs the demo, one runs the tests; both install into .venv."""
    commands = readme_commands()
    assert len(commands) == 2
    demo, tests = commands
    assert demo.endswith("python -m grpc_pool demo") and "pip install" in demo
    assert tests.endswith("python -m pytest") and "pip install" in tests


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert readme_commands()[1] in ci_lines


# A gRPC core log line: "I1201 12:00:00.000000  123 file.cc:45] ..." (INFO, WARNING).
GRPC_CORE_LINE = re.compile(r"^[IW]\d{4} ", flags=re.MULTILINE)

# A client that receives a server's GOAWAY: gRPC core logs it at INFO
# ("chttp2_transport.cc ... Got goaway"), the line the test output used to show.
GOAWAY = """
import grpc
from grpc_pool.testing.echo import ECHO, EchoServer

server = EchoServer().start()
channel = grpc.insecure_channel(server.target)
assert channel.unary_unary(ECHO)(b"x", timeout=5) == b"x"
server.stop()
channel.close()
"""


def test_grpc_core_is_quiet_in_the_test_session() -> None:
    """The session set GRPC_VERBOSITY=ERROR (unless the user set one) before grpc was
    first imported: nothing imported grpc before tests/__init__.py ran."""
    import tests

    assert not tests.GRPC_IMPORTED_FIRST, "grpc was imported before GRPC_VERBOSITY was set"
    expected = tests.USER_GRPC_VERBOSITY or tests.QUIET_GRPC_VERBOSITY
    assert os.environ["GRPC_VERBOSITY"] == expected


def test_child_processes_inherit_the_quiet_grpc_core() -> None:
    """A child process started the way tests start them (the session's environment)
    logs no gRPC core INFO line at a GOAWAY; the same child with GRPC_VERBOSITY=INFO
    does (so the quiet one is not quiet by chance)."""
    import tests

    if tests.USER_GRPC_VERBOSITY is not None:
        pytest.skip(f"GRPC_VERBOSITY={tests.USER_GRPC_VERBOSITY} set by the user wins")
    quiet = subprocess.run(
        [sys.executable, "-c", GOAWAY], capture_output=True, text=True, timeout=CHILD_TIMEOUT
    )
    assert quiet.returncode == 0, quiet.stderr
    assert not GRPC_CORE_LINE.search(quiet.stderr), quiet.stderr
    loud = subprocess.run(
        [sys.executable, "-c", GOAWAY],
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT,
        env={**os.environ, "GRPC_VERBOSITY": "INFO"},
    )
    assert loud.returncode == 0, loud.stderr
    assert GRPC_CORE_LINE.search(loud.stderr), loud.stderr
