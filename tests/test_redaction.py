"""Never echo a secret: a credential passed by mistake and a target's user-info are
redacted in errors, reprs, stats, events and logs."""

from __future__ import annotations

import dataclasses
import json
import logging
from typing import Any

import pytest

import grpc_pool
from grpc_pool import InvalidConfig, PoolConfig
from grpc_pool._base.redact import redact_target, redact_text, secrets_of

from .conftest import FAST, Recorder, wait_until

SECRET = "s3cret-Pw-9f2c"
TOKEN = "tok-7d1e0b55aa"


@pytest.mark.parametrize(
    ("target", "shown"),
    [
        ("host:443", "host:443"),
        (f"alice:{SECRET}@host:443", "alice:***@host:443"),
        (f"{TOKEN}@host:443", "***@host:443"),
        (f"dns:///alice:{SECRET}@host:443", "dns:///alice:***@host:443"),
        (f"dns://alice:{SECRET}@8.8.8.8/host:443", "dns://alice:***@8.8.8.8/host:443"),
        ("alice:p@ss@host:443", "alice:***@host:443"),
        ("ipv6:[::1]:50051", "ipv6:[::1]:50051"),
        ("unix:///tmp/grpc.sock", "unix:///tmp/grpc.sock"),
        ("unix:/tmp/a@b.sock", "unix:/tmp/a@b.sock"),  # a path: '@' hides nothing
        ("unix-abstract:svc@1", "unix-abstract:svc@1"),
    ],
)
def test_redact_target_hides_userinfo_only(target: str, shown: str) -> None:
    """The password (or a lone token) before '@' becomes ***; the user, host, port and
    targets without user-info are unchanged."""
    assert redact_target(target) == shown


def test_redact_text_hides_secrets_grpcio_echoes() -> None:
    """grpcio's resolver error repeats the user-info; the text redaction hides the
    password wherever it appears, percent-encoded or not."""
    secrets = secrets_of([f"alice:{SECRET}@127.0.0.1:1", "bob:p%40ss@h:1"])
    text = f"errors resolving alice:{SECRET}@127.0.0.1:1: lookup failed for alice:{SECRET}@"
    assert SECRET not in redact_text(text, secrets)
    assert "alice:***@127.0.0.1:1" in redact_text(text, secrets)
    assert "p@ss" not in redact_text("for bob:p@ss@h:1", secrets)


@pytest.mark.parametrize(
    "credentials", [f"Bearer {TOKEN}", f"Bearer {TOKEN}".encode(), {"token": TOKEN}]
)
def test_credentials_given_as_a_token_are_not_echoed(credentials: Any) -> None:
    """credentials="Bearer tok-..." by mistake: InvalidConfig names the field and the
    type, and says how to pass a token, but never shows the token."""
    with pytest.raises(InvalidConfig) as raised:
        grpc_pool.Pool("127.0.0.1:1", credentials=credentials)
    message = str(raised.value)
    assert TOKEN not in message and TOKEN not in repr(raised.value)
    assert message.startswith(f"credentials=<{type(credentials).__name__}")
    assert "redacted" in message and "grpc.ChannelCredentials" in message


def test_bad_target_list_error_redacts_the_good_ones() -> None:
    """An invalid target list is shown with every user-info redacted."""
    with pytest.raises(InvalidConfig) as raised:
        PoolConfig(target=[f"alice:{SECRET}@h:1", ""], insecure=True)
    assert SECRET not in str(raised.value)
    assert "alice:***@h:1" in str(raised.value)


def _resolver(target: str) -> list[str]:
    """A user's resolver for their own scheme: the one way a target with user-info is
    taken (grpcio fails it at every connect, so check_target refuses it)."""
    return ["127.0.0.1:1"]


def test_config_repr_and_from_env_redact_the_target() -> None:
    """repr(PoolConfig) shows the target redacted (a resolver's target may hold
    user-info); so does from_env's error that quotes the variable, which refuses it."""
    config = PoolConfig(target=f"alice:{SECRET}@h:1", insecure=True, resolver=_resolver)
    assert SECRET not in repr(config) and "alice:***@h:1" in repr(config)
    assert config.target == f"alice:{SECRET}@h:1"  # the real value is kept for connecting
    with pytest.raises(InvalidConfig) as raised:
        PoolConfig.from_env(
            environ={"GRPC_POOL_TARGET": f"alice:{SECRET}@h:1", "GRPC_POOL_SIZE": "0"}
        )
    assert SECRET not in str(raised.value)


@pytest.mark.parametrize("target", [f"alice:{SECRET}@orders:1", f"{TOKEN}@orders:1"])
def test_target_userinfo_never_printed(caplog: pytest.LogCaptureFixture, target: str) -> None:
    """A pool over a target with user-info (a password, a lone token), taken because
    a resolver reads it, whose address refuses connections: the secret appears
    nowhere: not in repr(pool), str(config), stats() as JSON, events,
    NoChannelAvailable or PoolTimeout, nor in any log record (message or traceback);
    where the target is shown, it is shown redacted."""
    caplog.set_level(logging.DEBUG, logger="grpc_pool")
    recorder = Recorder()
    options = {**FAST, "size": 2, "listeners": [recorder], "resolver": _resolver}
    pool = grpc_pool.Pool(target, **options)
    try:
        wait_until(
            lambda: {e.slot for e in recorder.named("connection_failed")} == {0, 1},
            what="a failed connect on both slots",
        )
        stats = pool.stats()
        texts = [repr(pool), str(pool.config), repr(pool.config), pool.config.target_label]
        texts.append(json.dumps(dataclasses.asdict(stats), default=str))
        with pytest.raises(grpc_pool.NoChannelAvailable) as unavailable:
            pool.get_channel()
        with pytest.raises(grpc_pool.PoolTimeout) as timeout:
            pool.wait_ready(timeout=0.05)
        texts += [str(unavailable.value), str(timeout.value)]
    finally:
        pool.close(grace=0)
    texts += [repr(event) for event in recorder.events]
    texts += [caplog.text, *(r.getMessage() for r in caplog.records)]
    for text in texts:
        assert SECRET not in text and TOKEN not in text, text
    # The secret was there to hide: the pool showed the target redacted.
    shown = redact_target(target)
    assert "***@" in shown and f"target={shown!r}" in repr(pool)
    assert shown in str(unavailable.value) and shown in str(timeout.value)
    assert [e.target for e in recorder.named("pool_started")] == [shown]


def test_log_tracebacks_are_redacted(caplog: pytest.LogCaptureFixture) -> None:
    """A grpc_pool log record with an exception whose message holds a configured
    secret reaches the application's handlers with it hidden, traceback included."""
    PoolConfig(target=f"carol:{SECRET}@h:1", insecure=True, resolver=_resolver)  # known now
    log = logging.getLogger("grpc_pool._test_redaction")
    with caplog.at_level(logging.ERROR, logger="grpc_pool"):
        try:
            raise RuntimeError(f"cannot reach carol:{SECRET}@h:1")
        except RuntimeError:
            log.exception("while talking to %s", f"carol:{SECRET}@h:1")
    assert "carol:***@h:1" in caplog.text and "RuntimeError" in caplog.text
    assert SECRET not in caplog.text
    assert SECRET not in caplog.records[-1].getMessage()


def test_an_at_sign_in_a_socket_path_is_no_secret() -> None:
    """'unix:/tmp/a@b.sock' has no user-info: nothing of it is remembered as a secret
    (else every 'a' in the pool's log lines would be masked)."""
    assert secrets_of(["unix:/tmp/a@b.sock", "unix-abstract:svc@1", "xds:///a@b"]) == ()
