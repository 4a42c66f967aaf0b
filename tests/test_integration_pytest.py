"""pytest integration (grpc_pool.testing.pytest_plugin, shipped with the package as
a ``pytest11`` entry point; examples/pytest_plugin.py loads it): a user's test suite
that enables the plugin runs under pytester and passes; its pools and servers are
gone after; run outside this repository it uses the installed package."""

from __future__ import annotations

import importlib.metadata
import re
import shutil
import subprocess
import sys
from pathlib import Path

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


ROOT = Path(__file__).resolve().parent.parent
# What a wheel of this package is built from; LICENSE and MANIFEST.in when present.
PACKAGE_SOURCE = ("pyproject.toml", "README.md", "LICENSE", "MANIFEST.in", "grpc_pool")
PIP_INSTALL_TIMEOUT = 180.0

# Stand-ins for the user's generated code that the documented recipe imports.
MYAPI_PB2 = """
import json


class GetOrder:
    def __init__(self, id=0):
        self.id = id

    def SerializeToString(self):
        return json.dumps({"id": self.id}).encode()

    @classmethod
    def FromString(cls, data):
        return cls(**json.loads(data))


class Order(GetOrder):
    pass
"""

MYAPI_PB2_GRPC = """
import grpc

from myapi_pb2 import GetOrder, Order


class OrdersServicer:
    def Get(self, request, context):
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "not implemented")


class OrdersStub:
    def __init__(self, channel):
        self.Get = channel.unary_unary(
            "/myapi.Orders/Get",
            request_serializer=GetOrder.SerializeToString,
            response_deserializer=Order.FromString,
        )


def add_OrdersServicer_to_server(servicer, server):
    get = grpc.unary_unary_rpc_method_handler(
        servicer.Get,
        request_deserializer=GetOrder.FromString,
        response_serializer=Order.SerializeToString,
    )
    handler = grpc.method_handlers_generic_handler("myapi.Orders", {"Get": get})
    server.add_generic_rpc_handlers((handler,))
"""

FROM_THE_INSTALLED_COPY = """
import grpc_pool
import grpc_pool.testing.pytest_plugin as plugin


def test_the_plugin_comes_from_the_installed_copy():
    assert grpc_pool.__file__.startswith({site!r}), grpc_pool.__file__
    assert plugin.__file__.startswith({site!r}), plugin.__file__
"""


def documented_recipe() -> str:
    """The test module docs/integrations.md gives for testing one's own service."""
    page = (ROOT / "docs" / "integrations.md").read_text()
    blocks = re.findall(r"^```python\n(.*?)^```", page, flags=re.MULTILINE | re.DOTALL)
    [recipe] = [block for block in blocks if "def grpc_server" in block]
    return str(recipe)


def install_a_copy(into: Path) -> Path:
    """This package installed (not editable) into ``into``/site from a copy of its
    source (the repository's tree stays untouched by the build); the site dir."""
    source, site = into / "source", into / "site"
    source.mkdir()
    for name in PACKAGE_SOURCE:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif path.exists():
            shutil.copy2(path, source / name)
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site)]
    done = subprocess.run(
        [*pip, str(source)], capture_output=True, text=True, timeout=PIP_INSTALL_TIMEOUT
    )
    assert done.returncode == 0, done.stderr
    return site


def test_documented_own_service_recipe_runs_from_an_installed_copy(
    pytester: pytest.Pytester,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The test module docs/integrations.md gives for testing one's own service (a
    ``grpc_server`` override yielding a target str) passes, run by pytest in a
    subprocess outside this repository against a non-editable install of the package:
    ``channel_pool`` takes the str (it read ``.target`` of it before: AttributeError).
    The installed wheel carries the LICENSE (PEP 639: dist-info/licenses/)."""
    site = install_a_copy(tmp_path_factory.mktemp("installed"))
    licenses = [p.read_text() for p in site.glob("grpc_pool-*.dist-info/licenses/LICENSE")]
    assert licenses == [(ROOT / "LICENSE").read_text()]
    monkeypatch.setenv("PYTHONPATH", str(site))
    monkeypatch.delenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    pytester.makepyfile(
        myapi_pb2=MYAPI_PB2,
        myapi_pb2_grpc=MYAPI_PB2_GRPC,
        test_orders=documented_recipe(),
        test_installed=FROM_THE_INSTALLED_COPY.format(site=str(site)),
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-W", "error")
    result.assert_outcomes(passed=2)


@pytest.mark.parametrize("server", [None, 50051, b"127.0.0.1:1"], ids=["None", "int", "bytes"])
def test_a_grpc_server_override_yielding_no_target_says_what_it_takes(server: object) -> None:
    """``channel_pool`` takes a target str or an object with a ``.target`` str; anything
    else is a TypeError naming what the override yielded and what it must yield."""
    with pytest.raises(TypeError) as raised:
        plugin.target_of(server)
    assert str(raised.value).startswith(f"grpc_server yielded {type(server).__name__} ")
    assert "channel_pool expects a target str" in str(raised.value)
    assert plugin.target_of("127.0.0.1:1") == "127.0.0.1:1"
