"""pytest integration (examples/pytest_plugin.py): a user's test suite that enables
the plugin runs under pytester and passes; its pools and servers are gone after."""

from __future__ import annotations

import pytest

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
