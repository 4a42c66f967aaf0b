"""Bad input is refused at construction with an error naming the field, the
value and what is allowed, before any thread starts."""

from __future__ import annotations

import math
import threading
from typing import Any

import grpc
import pytest

import grpc_pool
from grpc_pool._config.validate import STRATEGY_NAMES

from .conftest import pool_threads

BAD_OPTIONS: list[tuple[str, Any]] = [
    ("size", 0),
    ("size", -3),
    ("size", True),
    ("size", 2.0),
    ("size", "4"),
    ("strategy", "least_loaded"),
    ("strategy", 42),
    ("connect_timeout", -1),
    ("connect_timeout", 0),
    ("connect_timeout", "5"),
    ("connect_timeout", math.nan),
    ("backoff_initial", -0.5),
    ("backoff_multiplier", 0.5),
    ("backoff_jitter", 1.5),
    ("backoff_max", math.inf),
    ("retire_grace", -1),
    ("retire_grace", None),
    ("insecure", "yes"),
    ("credentials", "secret"),
    ("options", "grpc.keepalive_time_ms=1"),
    ("options", [("grpc.keepalive_time_ms",)]),
    ("interceptors", [object()]),
    ("name", ""),
    ("track_in_flight", 1),
]


@pytest.mark.parametrize(("field", "value"), BAD_OPTIONS)
def test_bad_option_names_field_value_and_allowed(field: str, value: Any) -> None:
    """Each bad option raises InvalidConfig (a ValueError) naming field and value;
    no thread starts."""
    threads_before = threading.active_count()
    with pytest.raises(grpc_pool.InvalidConfig) as info:
        grpc_pool.Pool("127.0.0.1:1", **{"insecure": True, field: value})
    message = str(info.value)
    assert field in message
    if field == "credentials":  # a secret: shown by type and size only
        assert repr(value) not in message and "<str of" in message
    else:
        assert repr(value) in message or field in ("options", "interceptors")
    assert "expected" in message
    assert isinstance(info.value, ValueError)
    assert threading.active_count() == threads_before
    assert not pool_threads()


@pytest.mark.parametrize("target", ["", "   ", None, 123, b"localhost:1"])
def test_bad_target(target: Any) -> None:
    """An empty or non-str target is refused and names 'target'."""
    with pytest.raises(grpc_pool.InvalidConfig, match="target"):
        grpc_pool.Pool(target, insecure=True)
    assert not pool_threads()


def test_insecure_with_credentials_is_refused() -> None:
    """insecure=True and credentials together are a configuration error."""
    with pytest.raises(grpc_pool.InvalidConfig, match="insecure"):
        grpc_pool.Pool("x:1", insecure=True, credentials=grpc.ssl_channel_credentials())
    assert not pool_threads()


def test_backoff_max_below_initial_is_refused() -> None:
    with pytest.raises(grpc_pool.InvalidConfig, match="backoff_max"):
        grpc_pool.PoolConfig(target="x:1", backoff_initial=5, backoff_max=1)


def test_unknown_keyword_lists_the_allowed_ones() -> None:
    """A misspelled option is named, with the allowed option names."""
    with pytest.raises(grpc_pool.InvalidConfig, match="sise") as info:
        grpc_pool.Pool("x:1", sise=3)
    assert "size" in str(info.value) and "strategy" in str(info.value)
    assert not pool_threads()


def test_from_config_requires_a_config() -> None:
    with pytest.raises(grpc_pool.InvalidConfig, match="PoolConfig"):
        grpc_pool.Pool.from_config({"target": "x:1"})  # type: ignore[arg-type]


def test_a_config_given_as_target_points_to_from_config() -> None:
    """Pool(PoolConfig(...)) is refused with a pointer to Pool.from_config, not the
    config's whole repr as a bad target, and starts nothing."""
    config = grpc_pool.PoolConfig(target="x:1")
    with pytest.raises(grpc_pool.InvalidConfig, match=r"Pool\.from_config\(config\)") as info:
        grpc_pool.Pool(config)  # type: ignore[arg-type]
    assert "backoff_initial" not in str(info.value)
    assert not pool_threads()


def test_config_is_frozen_and_defaults_follow_the_spec() -> None:
    """PoolConfig is immutable; defaults: size 5, round_robin, TLS, gRPC backoff spec."""
    config = grpc_pool.PoolConfig(target="api.example.com:443")
    assert (config.size, config.strategy, config.insecure) == (5, "round_robin", False)
    assert (config.backoff_initial, config.backoff_multiplier) == (1.0, 1.6)
    assert (config.backoff_jitter, config.backoff_max, config.connect_timeout) == (0.2, 120.0, 20.0)
    with pytest.raises(AttributeError):
        config.size = 3  # type: ignore[misc]
    assert set(STRATEGY_NAMES) == {"round_robin", "random", "power_of_two", "peak_ewma"}


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda p: p.scale_up(0), "n"),
        (lambda p: p.scale_up(True), "n"),
        (lambda p: p.scale_down(-1), "n"),
        (lambda p: p.scale_down("1"), "n"),
        (lambda p: p.resize(0), "size"),
        (lambda p: p.resize(2.5), "size"),
        (lambda p: p.get_channel(timeout=-1), "timeout"),
        (lambda p: p.wait_ready(timeout="soon"), "timeout"),
        (lambda p: p.wait_ready(min_ready=0), "min_ready"),
        (lambda p: p.wait_ready(min_ready=3), "min_ready"),
        (lambda p: p.close(grace=-1), "grace"),
    ],
)
def test_bad_call_arguments(make_pool: Any, dead_target: str, call: Any, field: str) -> None:
    """Bad arguments to pool methods raise InvalidConfig naming the argument; nothing changes."""
    pool = make_pool(dead_target, size=2)
    with pytest.raises(grpc_pool.InvalidConfig, match=field):
        call(pool)
    assert pool.status().expected_size == 2
