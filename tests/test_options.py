"""Channel option values over pooled channels: grpcio's pointer-valued options (an SSL
session cache shared by every slot, any object with __int__), and the checks of
grpcio's own tests redone over pools: _channel_args_test::test_client and
test_invalid_client_args, _auth_context_test::testSessionResumption,
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
from grpc_pool.testing import ECHO, EchoServer

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


# grpcio's _channel_args_test.TEST_CHANNEL_ARGS, its pointer wrapper included.
GRPCIO_TEST_CHANNEL_ARGS = (
    ("arg1", b"bytes_val"),
    ("arg2", "str_val"),
    ("arg3", 1),
    (b"arg4", "str_val"),
    ("arg6", PointerWrapper()),
)
# grpcio's _channel_args_test.INVALID_TEST_CHANNEL_ARGS: grpcio raises ValueError.
GRPCIO_INVALID_TEST_CHANNEL_ARGS = [{"foo": "bar"}, (("key",),), "str"]


def test_grpcio_channel_args_test_client_over_a_pool() -> None:
    """grpcio's _channel_args_test::test_client over pooled channels: bytes, str and
    int values, a bytes key and a plain object with __int__ (a pointer argument, as
    grpcio passes it) are accepted and kept as given, and 2 channels are built with
    them (it was InvalidConfig naming 'arg6' before)."""
    channel = grpc_pool.insecure_channel("localhost:8080", size=2, options=GRPCIO_TEST_CHANNEL_ARGS)
    try:
        assert channel.pool.config.options == GRPCIO_TEST_CHANNEL_ARGS
        assert channel.pool.config.options[-1][1] is GRPCIO_TEST_CHANNEL_ARGS[-1][1]
        assert channel.pool.status().expected_size == 2
    finally:
        channel.close()


@pytest.mark.parametrize(
    "options", GRPCIO_INVALID_TEST_CHANNEL_ARGS, ids=["dict", "1-tuple", "str"]
)
def test_grpcio_channel_args_test_invalid_client_args_over_a_pool(options: object) -> None:
    """grpcio's _channel_args_test::test_invalid_client_args over a pool: what grpcio
    refuses with ValueError, the pool refuses with InvalidConfig (a ValueError) at
    construction, naming options."""
    with pytest.raises(ValueError) as raised:
        grpc_pool.insecure_channel("localhost:8080", size=2, options=options)
    assert isinstance(raised.value, grpc_pool.InvalidConfig)
    assert "options" in str(raised.value)


def test_rpcs_run_over_channels_built_with_a_pointer_option(
    make_pool: Callable[..., grpc_pool.Pool], server: EchoServer
) -> None:
    """The pointer argument reaches gRPC core on every pooled channel and is harmless
    under a key core does not read: every slot connects and serves RPCs."""
    pool = make_pool(server.target, size=3, options=GRPCIO_TEST_CHANNEL_ARGS)
    pool.wait_ready(timeout=10, min_ready=3)
    for _ in range(6):
        assert pool.get_channel().unary_unary(ECHO)(b"x", timeout=5) == b"x"
    assert len(server.peers) == 3


class _BadInt:
    def __int__(self) -> int:
        raise RuntimeError("no address")


class _NegativeInt:
    def __int__(self) -> int:
        return -1


@pytest.mark.parametrize(
    ("key", "value", "why"),
    [
        ("grpc.ssl_session_cache", PointerWrapper(), "dereferences 'grpc.ssl_session_cache'"),
        ("grpc.resource_quota", PointerWrapper(), "dereferences 'grpc.resource_quota'"),
        ("grpc.socket_mutator", PointerWrapper(), "dereferences"),
        ("grpc.internal.subchannel_pool", PointerWrapper(), "dereferences"),
        (b"grpc.socket_factory", PointerWrapper(), "dereferences"),
        ("grpc.x", 1.5, "a float is not an int"),
        ("grpc.x", Decimal(7), "a Decimal is not an int"),
        ("grpc.x", None, "a NoneType is neither"),
        ("grpc.x", [1], "a list is neither"),
        ("grpc.x", _BadInt(), "its __int__ raised RuntimeError('no address')"),
        ("grpc.x", _NegativeInt(), "not an address"),
        ("grpc.x", "\udc80", "not encodable as UTF-8"),
        ("grpc.x", b"a\0b", "a NUL character"),
        ("grpc.x", 2**31, "beyond a C int"),
    ],
)
def test_values_grpcio_refuses_or_core_crashes_on_are_refused(
    key: str | bytes, value: object, why: str
) -> None:
    """What grpcio refuses at every connect (None, a list, an __int__ that raises or
    is no address, a str that is no UTF-8, beyond a C int), what gRPC core would
    dereference as one of its own objects (any pointer but grpcio's session cache
    under a pointer key: a crash), and a number that is not an int (grpcio would
    pass it as a pointer that core ignores) are InvalidConfig naming the key, the
    reason and the allowed values."""
    with pytest.raises(grpc_pool.InvalidConfig) as raised:
        PoolConfig(target="127.0.0.1:1", insecure=True, options=[(key, value)])
    message = str(raised.value)
    assert f"for key {key!r} is not allowed (" in message, message
    assert why in message, message
    assert "SSLSessionCache" in message and "__int__" in message, message


def test_a_session_cache_under_another_pointer_key_is_refused() -> None:
    """grpcio's session cache is a pointer to an SSL session cache: under another key
    gRPC core reads as a pointer (a resource quota) it would crash: refused."""
    cache = session_cache.ssl_session_cache_lru(4)
    with pytest.raises(grpc_pool.InvalidConfig) as raised:
        PoolConfig(target="127.0.0.1:1", options=[("grpc.resource_quota", cache)])
    assert "dereferences 'grpc.resource_quota'" in str(raised.value)


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
