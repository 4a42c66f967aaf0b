"""wait_ready's PoolTimeout carries the cause a NoChannelAvailable would: the slots'
last errors, and a hint when TLS meets plaintext."""

from __future__ import annotations

from collections.abc import Callable

import pytest

import grpc_pool
from grpc_pool._readers.hints import port_hint
from grpc_pool.testing.echo import EchoServer

from .conftest import wait_until


def _failed(pool: grpc_pool.Pool) -> bool:
    return any(s.last_error for s in pool.stats().slots)


def test_tls_pool_against_plaintext_server_names_the_likely_cause(
    make_pool: Callable[..., grpc_pool.Pool], server: EchoServer
) -> None:
    """A default TLS pool (insecure=False) against a plaintext EchoServer: PoolTimeout
    names the slots' last errors and hints that the server may be plaintext (try
    insecure=True); its __cause__ is the NoChannelAvailable get_channel() raises, with
    the same last errors and hint."""
    pool = make_pool(server.target, size=2, insecure=False)
    wait_until(lambda: _failed(pool), what="a failed TLS handshake")
    with pytest.raises(grpc_pool.PoolTimeout) as raised:
        pool.wait_ready(timeout=0.2)
    message = str(raised.value)
    assert "; last errors: " in message, message
    assert "hint: the TLS handshake failed; if the server is plaintext, try insecure=True" in (
        message
    ), message
    cause = raised.value.__cause__
    assert isinstance(cause, grpc_pool.NoChannelAvailable), cause
    assert "last errors: " in str(cause) and "try insecure=True" in str(cause), cause
    with pytest.raises(grpc_pool.NoChannelAvailable, match="try insecure=True"):
        pool.get_channel()


def test_plaintext_pool_against_a_dead_port_has_errors_but_no_tls_hint(
    make_pool: Callable[..., grpc_pool.Pool], make_server: Callable[..., EchoServer]
) -> None:
    """A refused connection is named as the last error; no TLS hint (it is not a
    TLS/plaintext mismatch)."""
    dead = make_server()
    target = dead.target
    dead.stop()
    pool = make_pool(target, size=1)
    wait_until(lambda: _failed(pool), what="a failed connect")
    with pytest.raises(grpc_pool.PoolTimeout) as raised:
        pool.wait_ready(timeout=0.2)
    assert "; last errors: " in str(raised.value)
    assert "hint:" not in str(raised.value)
    assert isinstance(raised.value.__cause__, grpc_pool.NoChannelAvailable)


def test_a_target_without_a_port_says_443_is_assumed_and_counts_plainly(
    make_pool: Callable[..., grpc_pool.Pool],
) -> None:
    """'localhost' (no port; grpcio dials localhost:443, where nothing listens): the
    pool takes it, and PoolTimeout and its NoChannelAvailable cause say "no port
    given: 443 assumed"; the count says the pool's ready/expected (as its repr's
    ready=0/3) and min_ready apart, not "0 of 1 channels ready"."""
    pool = make_pool("localhost", size=3)
    wait_until(lambda: _failed(pool), what="a failed connect")
    with pytest.raises(grpc_pool.PoolTimeout) as raised:
        pool.wait_ready(timeout=0.2)
    message = str(raised.value)
    assert "ready=0/3" in message, message
    assert ": wait_ready timed out after 0.2s: 0 of 3 channels ready, min_ready=1 needed" in (
        message
    )
    assert ":443: " in message, message  # grpcio's own error names the port
    assert message.endswith("; hint: no port given: 443 assumed (target 'localhost')"), message
    assert "no port given: 443 assumed" in str(raised.value.__cause__)


def test_a_target_with_a_port_gets_no_port_hint(
    make_pool: Callable[..., grpc_pool.Pool], dead_target: str
) -> None:
    """The port hint is about the target, not the error: a target with a port that
    refuses connections has none."""
    pool = make_pool(dead_target, size=1)
    wait_until(lambda: _failed(pool), what="a failed connect")
    with pytest.raises(grpc_pool.PoolTimeout) as raised:
        pool.wait_ready(timeout=0.2)
    assert "no port given" not in str(raised.value)
    assert "0 of 1 channels ready, min_ready=1 needed" in str(raised.value)


@pytest.mark.parametrize("target", ["127.0.0.1", "[::1]", "::1", "dns:///127.0.0.1"])
def test_the_port_hint_says_what_grpcio_dials_for_an_ip_address(target: str) -> None:
    """An IP address without a port: grpcio 1.63+ dials 443 (the hint says "443
    assumed"); grpcio 1.60 to 1.62 dial port 0 (measured on 1.60.0: "ipv4:127.0.0.1:0"),
    and the hint says that instead. A name is 443 on every version."""
    assert port_hint(target, "1.85.1") == f"no port given: 443 assumed (target {target!r})"
    assert port_hint(target, "1.60.0") == (
        "no port given: grpcio 1.60.0 dials port 0 for an IP address without one "
        f"(443 from grpcio 1.63 on) (target {target!r})"
    )
    assert port_hint("localhost", "1.60.0") == "no port given: 443 assumed (target 'localhost')"
    assert port_hint("127.0.0.1:1") == port_hint("[::1]:1") == ""
