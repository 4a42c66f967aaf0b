"""grpc_pool.insecure_channel / secure_channel: grpcio's positional signature, with
errors that say what went where when a pool argument is passed grpcio's way."""

from __future__ import annotations

import threading

import grpc
import pytest

import grpc_pool

TARGET = "127.0.0.1:1"


def test_an_int_where_grpcio_takes_options_points_to_size() -> None:
    """insecure_channel(target, 4): the 4 lands in grpcio's options; InvalidConfig names
    options and says to pass size=4 (before: TypeError 'int' object is not iterable);
    no thread starts."""
    before = set(threading.enumerate())
    with pytest.raises(grpc_pool.InvalidConfig) as raised:
        grpc_pool.insecure_channel(TARGET, 4)
    message = str(raised.value)
    assert message.startswith("options=4 is not allowed"), message
    assert "second positional argument" in message and "size=4" in message, message
    assert set(threading.enumerate()) <= before


def test_secure_channel_int_options_points_to_size() -> None:
    """secure_channel(target, credentials, 4): the same, naming the third argument."""
    with pytest.raises(grpc_pool.InvalidConfig) as raised:
        grpc_pool.secure_channel(TARGET, grpc.ssl_channel_credentials(), 4)
    message = str(raised.value)
    assert message.startswith("options=4 is not allowed"), message
    assert "third positional argument" in message and "size=4" in message, message


def test_secure_channel_insecure_true_says_it_is_always_tls() -> None:
    """secure_channel(..., insecure=True) is refused saying that secure_channel always
    uses TLS (insecure is always False there) and to use insecure_channel for plaintext."""
    with pytest.raises(grpc_pool.InvalidConfig) as raised:
        grpc_pool.secure_channel(TARGET, grpc.ssl_channel_credentials(), insecure=True)
    message = str(raised.value)
    assert message.startswith("insecure=True is not allowed"), message
    assert "always uses TLS" in message and "insecure is always False" in message, message
    assert "use insecure_channel() for plaintext" in message, message


def test_insecure_channel_insecure_false_says_it_is_always_plaintext() -> None:
    """insecure_channel(..., insecure=False) says insecure is always True there and
    points to secure_channel for TLS."""
    with pytest.raises(grpc_pool.InvalidConfig, match="always True there: use secure_channel"):
        grpc_pool.insecure_channel(TARGET, insecure=False)


@pytest.mark.parametrize("options", [None, (), [("grpc.primary_user_agent", "x")]])
def test_grpcio_options_are_still_taken_positionally(options: object) -> None:
    """None, an empty or a list of pairs in grpcio's options position still work."""
    channel = grpc_pool.insecure_channel(TARGET, options, size=1)
    try:
        assert channel.pool.config.options == tuple(options or ())  # type: ignore[call-overload]
    finally:
        channel.close()
