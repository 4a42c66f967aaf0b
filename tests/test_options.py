"""Channel option values over pooled channels: grpcio's pointer-valued option (an SSL
session cache) shared by every slot, and the checks of grpcio's own tests redone over
pools: _channel_args_test::test_client, _auth_context_test::testSessionResumption,
_session_cache_test::testSSLSessionCacheLRU (LRU of size 1, eviction, restart)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from concurrent import futures
from decimal import Decimal
from typing import Any

import grpc
import pytest
from grpc.experimental import session_cache

import grpc_pool
from grpc_pool import PoolConfig

from .conftest import FAST, self_signed

SERVICE = "grpc_pool.test.Tls"
REUSED = f"/{SERVICE}/Reused"


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, bytes]:
    """A self-signed certificate for localhost (the openssl CLI)."""
    return self_signed(
        tmp_path_factory.mktemp("tls"), "/CN=localhost", "IP:127.0.0.1,DNS:localhost"
    )


def start_tls_server(certificate: tuple[bytes, bytes], port: int = 0) -> tuple[grpc.Server, int]:
    """A TLS server on localhost (127.0.0.1 and ::1; ``port`` 0: a free one) whose
    Reused method answers the caller's peer, auth_context()["ssl_session_reused"] and
    user-agent, as JSON."""

    def reused(request: bytes, context: grpc.ServicerContext) -> bytes:
        values = context.auth_context().get("ssl_session_reused", [])
        agent = dict(context.invocation_metadata()).get("user-agent", "")
        answer = {"peer": context.peer(), "reused": [v.decode() for v in values], "ua": agent}
        return json.dumps(answer).encode()

    handler = grpc.method_handlers_generic_handler(
        SERVICE, {"Reused": grpc.unary_unary_rpc_method_handler(reused)}
    )
    server = grpc.server(futures.ThreadPoolExecutor(4))
    server.add_generic_rpc_handlers((handler,))
    bound = server.add_secure_port(f"localhost:{port}", grpc.ssl_server_credentials([certificate]))
    server.start()
    return server, bound


@pytest.fixture
def tls_server(certificate: tuple[bytes, bytes]) -> Iterator[int]:
    """A TLS server from ``start_tls_server``, stopped at teardown."""
    server, port = start_tls_server(certificate)
    yield port
    server.stop(None).wait(10)


def _reuse_by_peer(pool: grpc_pool.Pool, calls: int) -> dict[str, list[str]]:
    seen: dict[str, list[str]] = {}
    for _ in range(calls):
        answer = json.loads(pool.get_channel().unary_unary(REUSED)(b"", timeout=5))
        seen[answer["peer"]] = answer["reused"]
    return seen


@pytest.mark.parametrize("shared", [True, False], ids=["shared-cache", "no-cache"])
def test_shared_session_cache_resumes_tls_on_every_new_slot(
    make_pool: Callable[..., grpc_pool.Pool],
    certificate: tuple[bytes, bytes],
    tls_server: int,
    shared: bool,
) -> None:
    """With one ssl_session_cache_lru in options (refused as InvalidConfig before), the
    first slot does a full handshake and the 3 slots added after it resume that TLS
    session (the server sees ssl_session_reused true on their connections); without
    the cache every connection is a full handshake."""
    options: list[tuple[str, Any]] = []
    if shared:
        options.append(("grpc.ssl_session_cache", session_cache.ssl_session_cache_lru(16)))
    credentials = grpc.ssl_channel_credentials(root_certificates=certificate[1])
    pool = make_pool(
        f"localhost:{tls_server}",
        size=1,
        strategy="round_robin",
        options=options,
        **{**FAST, "insecure": False, "credentials": credentials},
    )
    pool.wait_ready(timeout=10)
    first = _reuse_by_peer(pool, 1)
    assert list(first.values()) == [["false"]]
    pool.resize(4)
    pool.wait_ready(timeout=10, min_ready=4)
    later = {p: r for p, r in _reuse_by_peer(pool, 16).items() if p not in first}
    assert len(later) == 3, later
    expected = ["true"] if shared else ["false"]
    assert all(r == expected for r in later.values()), later


class PointerWrapper:
    """grpcio's _channel_args_test.TestPointerWrapper: any object with __int__."""

    def __int__(self) -> int:
        return 123456


# grpcio's _channel_args_test.TEST_CHANNEL_ARGS without the pointer wrapper.
GRPCIO_TEST_CHANNEL_ARGS = (
    ("arg1", b"bytes_val"),
    ("arg2", "str_val"),
    ("arg3", 1),
    (b"arg4", "str_val"),
)


def test_grpcio_channel_args_test_client_over_a_pool() -> None:
    """grpcio's _channel_args_test::test_client over pooled channels: bytes, str and
    int values and a bytes key are accepted and kept as given, and 2 channels are
    built with them; its arbitrary __int__ object is refused (grpcio would pass it to
    core as a raw address)."""
    channel = grpc_pool.insecure_channel("localhost:8080", size=2, options=GRPCIO_TEST_CHANNEL_ARGS)
    try:
        assert channel.pool.config.options == GRPCIO_TEST_CHANNEL_ARGS
    finally:
        channel.close()
    with pytest.raises(grpc_pool.InvalidConfig, match="'arg6'"):
        grpc_pool.insecure_channel("localhost:8080", size=2, options=[("arg6", PointerWrapper())])


@pytest.mark.parametrize(
    "value",
    [PointerWrapper(), 1.5, Decimal(7), None, [1], "\udc80", b"a\0b", 2**31],
    ids=["__int__", "float", "Decimal", "None", "list", "surrogate", "NUL", "int32+1"],
)
def test_non_grpcio_pointer_values_are_refused_naming_the_key(value: object) -> None:
    """Objects grpcio would misread as a pointer (arbitrary __int__, float, Decimal) or
    refuse (None, a list, a str that is no UTF-8, a NUL, beyond int32) are InvalidConfig
    naming the key and the session cache as the one pointer value taken."""
    with pytest.raises(grpc_pool.InvalidConfig) as raised:
        PoolConfig(target="127.0.0.1:1", insecure=True, options=[("grpc.ssl_session_cache", value)])
    message = str(raised.value)
    assert "'grpc.ssl_session_cache'" in message
    assert "SSLSessionCache" in message


def test_session_cache_is_kept_as_the_same_object() -> None:
    """The config keeps the session cache object itself (grpcio does not reference
    count it; one cache is meant to serve every channel)."""
    cache = session_cache.ssl_session_cache_lru(4)
    config = PoolConfig(target="127.0.0.1:1", options=[("grpc.ssl_session_cache", cache)])
    assert config.options[0][1] is cache


def _one_pool_reused(port: int, certificate: tuple[bytes, bytes], cache: Any) -> list[str]:
    """A NEW pool of 1 (its own connection) with ``cache`` in options, one RPC, closed:
    what the server said about session reuse on that connection."""
    credentials = grpc.ssl_channel_credentials(root_certificates=certificate[1])
    options = [("grpc.ssl_session_cache", cache)]
    settings = {**FAST, "insecure": False, "credentials": credentials}
    with grpc_pool.Pool(f"localhost:{port}", size=1, options=options, **settings) as pool:
        pool.wait_ready(timeout=10)
        answer = json.loads(pool.get_channel().unary_unary(REUSED)(b"", timeout=5))
    reused: list[str] = answer["reused"]
    return reused


def test_grpcio_auth_context_test_session_resumption_over_pools(
    certificate: tuple[bytes, bytes], tls_server: int
) -> None:
    """grpcio's _auth_context_test::testSessionResumption over pooled channels: with
    one ssl_session_cache_lru(1) shared by two pools in turn, the first pool's
    connection is a full handshake (ssl_session_reused false) and the second pool's
    resumes that session (true)."""
    cache = session_cache.ssl_session_cache_lru(1)
    assert _one_pool_reused(tls_server, certificate, cache) == ["false"]
    assert _one_pool_reused(tls_server, certificate, cache) == ["true"]


def test_grpcio_session_cache_test_lru_over_pools(certificate: tuple[bytes, bytes]) -> None:
    """grpcio's _session_cache_test::testSSLSessionCacheLRU over pooled channels, each
    step a new pool of 1 sharing one ssl_session_cache_lru(1): server 1 false then
    true; server 2 (same name, the capacity-1 cache now holds its session) false then
    true; server 1 again false (its session was evicted); server 1 restarted on its
    port false (its old ticket is no good), then true."""
    cache = session_cache.ssl_session_cache_lru(1)
    server1, port1 = start_tls_server(certificate)
    server2, port2 = start_tls_server(certificate)
    try:
        seen = [_one_pool_reused(port1, certificate, cache) for _ in range(2)]
        seen += [_one_pool_reused(port2, certificate, cache) for _ in range(2)]
        seen.append(_one_pool_reused(port1, certificate, cache))
        server1.stop(None).wait(10)
        server1, _ = start_tls_server(certificate, port1)
        seen += [_one_pool_reused(port1, certificate, cache) for _ in range(2)]
    finally:
        server1.stop(None).wait(10)
        server2.stop(None).wait(10)
    expected = [["false"], ["true"], ["false"], ["true"], ["false"], ["false"], ["true"]]
    assert seen == expected


def test_channel_options_reach_every_pooled_channel(
    make_pool: Callable[..., grpc_pool.Pool],
    certificate: tuple[bytes, bytes],
    tls_server: int,
) -> None:
    """Beyond grpcio's _channel_args_test (construction only): a str option,
    grpc.primary_user_agent, is in effect on every pooled connection: the server sees
    it in the user-agent of RPCs from each of 3 distinct peers."""
    credentials = grpc.ssl_channel_credentials(root_certificates=certificate[1])
    pool = make_pool(
        f"localhost:{tls_server}",
        size=3,
        strategy="round_robin",
        options=[("grpc.primary_user_agent", "grpc-pool-test/1.0")],
        **{**FAST, "insecure": False, "credentials": credentials},
    )
    pool.wait_ready(timeout=10, min_ready=3)
    agents: dict[str, str] = {}
    for _ in range(12):
        answer = json.loads(pool.get_channel().unary_unary(REUSED)(b"", timeout=5))
        agents[answer["peer"]] = answer["ua"]
    assert len(agents) == 3, agents
    assert all(ua.startswith("grpc-pool-test/1.0 ") for ua in agents.values()), agents
