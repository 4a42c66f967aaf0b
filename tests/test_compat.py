"""grpcio compatibility: the private grpcio attributes the pool relies on, and the
floor versions CI tests (.ci/floor.txt) against the ones pyproject.toml claims."""

from __future__ import annotations

import re
import threading
from pathlib import Path

import grpc
import pytest
from packaging.version import Version

from grpc_pool._channel.pooled import CYGRPC, _connectivity_state, grpc_fork_holds_threads
from grpc_pool._workers.watch import checker
from grpc_pool.testing import EchoServer

from .conftest import wait_until

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: tomli comes with pytest there
    import tomli as tomllib

ROOT = Path(__file__).parent.parent
POLLER_EXIT_TIMEOUT = 10.0  # grpcio's poller ends within two 0.2 s ticks


def test_grpcio_poller_flag_tracks_the_poller_thread(server: EchoServer) -> None:
    """grpcio's private ``channel._connectivity_state.polling`` exists, is True while a
    callback is subscribed (its connectivity poller thread runs) and turns False once
    nobody is subscribed, after which that thread ends. The pool reads this flag to
    let the poller end before it closes a channel and before fork; if grpcio renames
    or drops it, those waits silently stop waiting, so this test fails first."""
    before = set(threading.enumerate())
    channel = grpc.insecure_channel(server.target)
    seen: list[grpc.ChannelConnectivity] = []
    try:
        channel.subscribe(seen.append, try_to_connect=True)
        state = getattr(channel, "_connectivity_state", None)
        assert state is not None, f"grpcio {grpc.__version__}: no channel._connectivity_state"
        assert _connectivity_state(channel) is state  # what grpc_pool._channel looks up
        assert hasattr(state, "polling"), f"grpcio {grpc.__version__}: no .polling"
        assert state.polling is True
        pollers = [t for t in threading.enumerate() if t not in before]
        assert pollers, "subscribe started no thread"
        wait_until(lambda: grpc.ChannelConnectivity.READY in seen, 10, "READY delivered")
        assert state.polling is True  # still subscribed: the poller keeps running

        channel.unsubscribe(seen.append)
        wait_until(lambda: state.polling is False, POLLER_EXIT_TIMEOUT, "polling to turn False")
        for thread in pollers:
            thread.join(POLLER_EXIT_TIMEOUT)
            assert not thread.is_alive(), f"{thread.name} still runs after polling is False"
    finally:
        channel.close()


def test_grpcio_check_connectivity_state_reads_and_connects(server: EchoServer) -> None:
    """grpcio's private ``channel._channel.check_connectivity_state(try_to_connect)``
    (what the pool's watcher reads, ``_workers/watch.py``) exists on this grpcio,
    answers a known state, connects when asked, reads READY, and raises ValueError
    once the channel is closed (the watcher's SHUTDOWN). If grpcio renames or drops
    it, the pool falls back to grpcio's subscribe() pollers; this test fails first."""
    channel = grpc.insecure_channel(server.target)
    try:
        read = channel._channel.check_connectivity_state  # type: ignore[attr-defined]
        codes = {c.value[0] for c in grpc.ChannelConnectivity}
        assert read(True) in codes
        ready = grpc.ChannelConnectivity.READY.value[0]
        wait_until(lambda: read(False) == ready, 10, "READY read")
        assert checker(channel) is not None
    finally:
        channel.close()
    with pytest.raises(ValueError):
        read(False)


def test_grpcio_fork_state_is_readable() -> None:
    """grpcio's private ``cygrpc._fork_state`` (``fork_handler_registered``,
    ``fork_in_progress``) and ``cygrpc._fork_handler_failed`` exist (False outside a
    fork): the pool reads them to install its fork handlers after grpcio's
    (``_fork.register_handlers``) and to know that grpcio's handler, should it run
    first, holds its pollers (``PooledChannel._wait_for_poller``). If grpcio renames
    or drops them, tests/test_fork.py's futures-register-early and
    subscribe-grpc-first rows fail; this test says why."""
    state = getattr(CYGRPC, "_fork_state", None)
    assert state is not None, f"grpcio {grpc.__version__}: no cygrpc._fork_state"
    assert state.fork_in_progress is False
    assert isinstance(state.fork_handler_registered, bool)
    assert callable(CYGRPC.is_fork_support_enabled)
    assert CYGRPC._fork_handler_failed is False
    assert grpc_fork_holds_threads() is False


def _pins(text: str) -> dict[str, str]:
    """{name: version} of the ``name==version`` lines of a requirements file."""
    pins = {}
    for line in text.splitlines():
        found = re.match(r"([A-Za-z0-9_.-]+)==([^\s;#]+)", line.strip())
        if found:
            pins[found[1].lower()] = found[2]
    return pins


def test_ci_floor_is_the_claimed_floor() -> None:
    """.ci/floor.txt, what CI's floor run installs, pins grpcio and protobuf at exactly
    the lowest versions pyproject.toml accepts, grpcio's companions (health checking,
    tools) at the same release, and every package of the ``test`` extra: a floor
    raised or lowered on one side only fails here."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    floors = {}
    for requirement in project["dependencies"]:
        found = re.fullmatch(r"([A-Za-z0-9_.-]+)>=([0-9.]+)", requirement)
        if found:
            floors[found[1].lower()] = found[2]
    pins = _pins((ROOT / ".ci" / "floor.txt").read_text())
    for name in ("grpcio", "protobuf"):
        assert Version(pins[name]) == Version(floors[name]), (name, pins[name], floors[name])
    assert pins["grpcio-health-checking"] == pins["grpcio-tools"] == pins["grpcio"]
    test_extra = {
        re.split(r"[=<>;\s]", r, maxsplit=1)[0].lower()
        for r in project["optional-dependencies"]["test"]
    }
    assert test_extra <= set(pins), f"not in .ci/floor.txt: {test_extra - set(pins)}"
