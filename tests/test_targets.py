"""Targets are checked when a config is made: one rule (check_target) for PoolConfig,
each entry of a list of targets, and the CLI's check command."""

from __future__ import annotations

import threading

import pytest

import grpc_pool
from grpc_pool import PoolConfig
from grpc_pool._base.redact import redact_target
from grpc_pool._config.targets import no_port
from grpc_pool._config.validate import TARGET_FORMS, check_target

GOOD = [
    "host",  # no port: 443
    "api.example.com:443",
    "localhost:50051",
    "Localhost:50051",
    "127.0.0.1:50051",
    "[::1]:50051",
    "[::1]",
    "::1",
    "dns:///localhost:50051",
    "DNS:///localhost:50051",
    "dns:///[::1]:50051",
    "dns:///localhost",
    "dns://8.8.8.8/host:443",
    "dns://8.8.8.8:53/host:443",
    "dns:localhost:50051",
    "ipv4:127.0.0.1:1",
    "ipv4:127.0.0.1:1,127.0.0.2:2",
    "ipv4:///127.0.0.1:1",
    "ipv6:[::1]:50051",
    "ipv6:[::1]:1,[::2]:2",
    "unix:x.sock",
    "unix:/tmp/x.sock",
    "unix:///tmp/x.sock",
    "unix-abstract:name",
    "xds:///svc",
    "xds:svc",
    "google-c2p:///svc",
    "unix:/tmp/a@b.sock",  # '@' in a path is a character, not user-info
    "unix-abstract:svc@1",
]

# (target, what the message says is wrong)
BAD = [
    ("dsn:///x:1", "unknown scheme 'dsn'"),
    ("http://127.0.0.1:50051", "unknown scheme 'http'"),
    ("grpc://localhost:50051", "unknown scheme 'grpc'"),
    ("fake:x", "unknown scheme 'fake'"),
    ("vsock:1:2", "unknown scheme 'vsock'"),
    (" 127.0.0.1:50051", "whitespace"),
    ("127.0.0.1:50051 ", "whitespace"),
    ("\tlocalhost:50051", "whitespace"),
    ("a b:1", "whitespace"),
    ("h:99999", "port '99999' is not 1..65535"),
    ("h:65536", "port '65536'"),
    ("h:0", "port '0'"),
    ("h:-1", "port '-1'"),
    ("h:abc", "port 'abc'"),
    ("h:", "port ''"),
    ("localhost:50051/path", "port '50051/path'"),
    ("localhost:50051?x=1", "port '50051?x=1'"),
    ("localhost:50051:1", "more than one ':'"),
    ("::1:50051", "more than one ':'"),
    ("[::1:50051", "unclosed '['"),
    ("[x]:1", "not an IPv6 address"),
    ("1.2.3.4.5:80", "not an IPv4 address"),
    ("-bad-:1", "not a DNS name"),
    ("dns:///", "no name after 'dns:'"),
    ("dns:///localhost:", "port ''"),
    ("dns://8.8.8.8", "needs '/name'"),
    ("ipv4:", "no address"),
    ("ipv4:127.0.0.1", "no port"),
    ("ipv4:127.0.0.1:1,", "empty address"),
    ("ipv4:localhost:1", "not an IPv4 address"),
    ("ipv6:::1:50051", "more than one ':'"),
    ("ipv6:::1", "an IPv6 address with a port goes in [ ]"),
    ("ipv6:[::1]", "no port"),
    ("ipv6:127.0.0.1:1", "ipv6: takes [addr]:port"),
    ("unix:", "unix socket path"),
    ("unix://host/tmp/x.sock", "takes no authority"),
    ("unix:" + "x" * 108, "unix socket path"),
    ("unix-abstract:", "abstract socket name"),
    ("xds:///", "no service name"),
]


@pytest.mark.parametrize("target", GOOD)
def test_grpcio_target_forms_are_accepted(target: str) -> None:
    """Every form grpcio 1.85 resolves as meant is accepted unchanged, alone and in a
    list of targets."""
    assert check_target(target) == target
    assert PoolConfig(target=target, insecure=True).target == target
    assert PoolConfig(target=[target, "127.0.0.1:1"], insecure=True).target == (
        target,
        "127.0.0.1:1",
    )


@pytest.mark.parametrize(("target", "why"), BAD, ids=[t for t, _ in BAD])
def test_malformed_targets_are_refused_naming_target_and_forms(target: str, why: str) -> None:
    """A target grpcio would fail at every connect (or silently dial elsewhere: a port
    wrapped mod 65536, an empty port taken as 443) is InvalidConfig at construction
    naming target=, the value, the reason and the allowed forms; nothing starts."""
    before = set(threading.enumerate())
    with pytest.raises(grpc_pool.InvalidConfig) as raised:
        grpc_pool.Pool(target, insecure=True)
    message = str(raised.value)
    assert message.startswith(f"target={target!r} is not allowed ("), message
    assert why in message, message
    assert message.endswith(f"expected {TARGET_FORMS}"), message
    assert set(threading.enumerate()) <= before


@pytest.mark.parametrize("target", ["", "dsn:///x:1", "h:99999"])
def test_a_bad_entry_of_a_target_list_is_refused(target: str) -> None:
    """One malformed entry in a list of targets refuses the whole config, naming the
    list, the entry and why."""
    with pytest.raises(grpc_pool.InvalidConfig) as raised:
        PoolConfig(target=["127.0.0.1:1", target], insecure=True)
    message = str(raised.value)
    assert message.startswith(f"target={['127.0.0.1:1', target]!r} is not allowed: entry 1: ")
    assert f"target={target!r} is not allowed" in message


def test_the_empty_target_names_the_forms() -> None:
    """An empty target names target= and the allowed forms."""
    with pytest.raises(grpc_pool.InvalidConfig) as raised:
        PoolConfig(target="", insecure=True)
    assert str(raised.value).startswith("target='' is not allowed")
    assert TARGET_FORMS in str(raised.value)


def test_user_info_is_redacted_in_the_error() -> None:
    """A refused target's password never appears in the message."""
    with pytest.raises(grpc_pool.InvalidConfig) as raised:
        PoolConfig(target="user:s3cret@host:99999", insecure=True)
    assert "s3cret" not in str(raised.value)
    assert "user:***@" in str(raised.value)


@pytest.mark.parametrize("target", ["consul://web", "dsn:///x:1", "k8s:svc.ns"])
def test_with_a_resolver_any_scheme_is_the_users(target: str) -> None:
    """With resolver= the target is the resolver's to read: any scheme is accepted."""
    config = PoolConfig(target=target, insecure=True, resolver=lambda t: ["127.0.0.1:1"])
    assert config.target == target


def test_the_cli_uses_the_same_check() -> None:
    """The check command refuses what PoolConfig refuses, with the same reason."""
    from grpc_pool.cli import check

    with pytest.raises(SystemExit) as raised:
        check._parse_target("dsn:///x:1")
    assert "TARGET 'dsn:///x:1' is not allowed (unknown scheme 'dsn')" in str(raised.value)
    assert check._parse_target("host") == "host"


# Every target of GOOD that names a host with no port: grpcio dials 443 for them.
NO_PORT = {"host", "[::1]", "::1", "dns:///localhost"}

# User-info in every form grpcio fails at each connect (measured, grpcio 1.60 and 1.85):
# looked up as part of the host name, an unparsable DNS server, an invalid ipv4: URI.
USER_INFO = [
    "alice:s3cret@127.0.0.1:50051",
    "tok-7d1e@127.0.0.1:50051",
    "alice@localhost:50051",
    "dns:///alice:s3cret@localhost:50051",
    "dns://alice:s3cret@127.0.0.1:53/localhost:50051",
    "ipv4:alice:s3cret@127.0.0.1:50051",
]


@pytest.mark.parametrize("target", USER_INFO)
def test_user_info_is_refused_naming_target_redacted(target: str) -> None:
    """A target with user-info (grpcio resolves it as part of the host name and fails
    every connect) is InvalidConfig at construction naming target=, the value with
    the secret shown as ***, and why; nothing starts. The CLI refuses it alike."""
    from grpc_pool.cli import check

    before = set(threading.enumerate())
    with pytest.raises(grpc_pool.InvalidConfig) as raised:
        grpc_pool.Pool(target, insecure=True)
    message = str(raised.value)
    assert message.startswith(f"target={redact_target(target)!r} is not allowed (user-info")
    assert "s3cret" not in message and "tok-7d1e" not in message, message
    assert set(threading.enumerate()) <= before
    with pytest.raises(SystemExit) as cli:
        check._parse_target(target)
    assert "user-info" in str(cli.value) and "s3cret" not in str(cli.value)


@pytest.mark.parametrize("target", GOOD)
def test_targets_without_a_port_are_the_ones_grpcio_dials_at_443(target: str) -> None:
    """no_port finds exactly the accepted targets that give no port ('host', '[::1]',
    a bare IPv6 literal, 'dns:///name'), alone and in a list; never an ipv4:/ipv6:
    list, a unix socket or an xds name."""
    expected = (target,) if target in NO_PORT else ()
    assert no_port(target) == expected
    assert no_port(["127.0.0.1:1", target]) == expected
