"""pytest integration (grpc_pool.testing.pytest_plugin, shipped with the package as
a ``pytest11`` entry point; examples/pytest_plugin.py loads it): a user's test suite
that enables the plugin runs under pytester and passes; its pools and servers are
gone after; run outside this repository it uses the installed package."""

from __future__ import annotations

import importlib.metadata

import pytest

import grpc_pool.testing.pytest_plugin as plugin

PLUGIN = "grpc_pool.testing.pytest_plugin"

pytest_plugins = ["pytester"]

USER_CONFTEST = """
pytest_plugins = ["examples.pytest_plugin"]
"""

USER_TESTS = """
import pytest

import grpc_pool
from grpc_pool.testing.echo import ECHO

seen = []


def test_rpc_through_the_pool(channel_pool):
    channel = channel_pool.get_channel()
    assert channel.unary_unary(ECHO)(b"hi", timeout=5) == b"hi"
    seen.append(channel_pool)


def test_each_test_gets_a_fresh_pool_and_the_last_one_was_closed(channel_pool):
    assert seen and seen[0] is not channel_pool
    with pytest.raises(grpc_pool.PoolClosed):
        seen[0].get_channel()
"""

USER_TESTS_SIZED = """
import pytest

from grpc_pool.testing.echo import ECHO


@pytest.fixture
def grpc_pool_options(grpc_pool_options):
    return {**grpc_pool_options, "size": 3}


def test_options_overridden_per_module(channel_pool, grpc_server):
    channel_pool.wait_ready(timeout=10, min_ready=3)
    for _ in range(9):
        assert channel_pool.get_channel().unary_unary(ECHO)(b"x", timeout=5) == b"x"
    assert len(grpc_server.peers) == 3
"""


def test_user_suite_with_the_plugin_passes(pytester: pytest.Pytester) -> None:
    """A suite enabling ``examples.pytest_plugin`` from its conftest gets a working
    pool per test against a real local server, closed at each teardown, and can
    override the pool options; warnings are errors in it too. Run in-process, so
    this project's thread check also proves the plugin leaves no thread behind."""
    pytester.makeconftest(USER_CONFTEST)
    pytester.makepyfile(test_user=USER_TESTS, test_user_sized=USER_TESTS_SIZED)
    result = pytester.runpytest("-p", "no:cacheprovider", "-W", "error", "-q")
    result.assert_outcomes(passed=3)


OUTSIDE_TESTS = """
import sys

import grpc_pool
from grpc_pool.testing.echo import ECHO


def test_fixtures_come_from_the_installed_package(channel_pool, grpc_server):
    assert channel_pool.get_channel().unary_unary(ECHO)(b"hi", timeout=5) == b"hi"
    assert grpc_server.peers
    assert "grpc_pool.testing.pytest_plugin" in sys.modules
    assert "examples.pytest_plugin" not in sys.modules and "examples" not in sys.modules
"""


def test_entry_point_names_the_packaged_plugin() -> None:
    """The installed distribution declares the plugin under pytest11, named after the
    module, so that ``-p`` / ``pytest_plugins`` with the module name and the autoload
    are one registration, not two."""
    dist = importlib.metadata.distribution("grpc_pool")
    found = [(e.name, e.value) for e in dist.entry_points if e.group == "pytest11"]
    assert found == [(PLUGIN, PLUGIN)]


def test_plugin_defines_fixtures_only() -> None:
    """Autoloading the plugin is harmless: the module has no pytest hooks, only the
    three fixtures, which run only in a test that asks for them."""
    assert [name for name in vars(plugin) if name.startswith("pytest_")] == []
    assert {"channel_pool", "grpc_server", "grpc_pool_options"} <= set(plugin.__all__)


def test_enabled_with_dash_p_outside_the_repository(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With autoload off, ``-p grpc_pool.testing.pytest_plugin`` enables the fixtures in
    a suite outside this repository (pytester's temp dir, its own subprocess): they
    come from the installed grpc_pool, not from examples/. Without ``-p`` the
    fixtures are not there: the plugin is opt-in."""
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    pytester.makepyfile(test_outside=OUTSIDE_TESTS)
    enabled = pytester.runpytest_subprocess("-p", PLUGIN, "-p", "no:cacheprovider", "-W", "error")
    enabled.assert_outcomes(passed=1)
    absent = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    absent.assert_outcomes(errors=1)
    absent.stdout.fnmatch_lines(["*fixture 'channel_pool' not found*"])


def test_autoloaded_and_listed_in_pytest_plugins_outside_the_repository(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With autoload on (pytest's default) the entry point provides the fixtures, and a
    conftest's ``pytest_plugins = ["grpc_pool.testing.pytest_plugin"]`` on top of it
    registers nothing twice; ``-p no:<its name>`` turns it off."""
    monkeypatch.delenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    pytester.makepyfile(test_outside=OUTSIDE_TESTS)
    auto = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-W", "error")
    auto.assert_outcomes(passed=1)
    pytester.makeconftest(f"pytest_plugins = [{PLUGIN!r}]")
    both = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-W", "error")
    both.assert_outcomes(passed=1)
    pytester.makeconftest("")
    off = pytester.runpytest_subprocess("-p", f"no:{PLUGIN}", "-p", "no:cacheprovider")
    off.assert_outcomes(errors=1)
