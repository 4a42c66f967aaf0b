"""The README's two fresh-machine commands stay the ones CI and users run."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


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
