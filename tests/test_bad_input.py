"""Property test: every PoolConfig field and every public method argument, fed wrong
types, NaN, infinities, huge and negative numbers, empty and garbage strings, raises
InvalidConfig naming the field, and starts no thread."""

from __future__ import annotations

import math
import threading
from dataclasses import fields
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import grpc_pool
from grpc_pool import PoolConfig
from grpc_pool._config.validate import MAX_COUNT, MAX_SECONDS, MAX_SIZE, STRATEGY_NAMES
from grpc_pool.testing.echo import EchoServer

from .conftest import pool_threads

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# -- bad values by kind ----------------------------------------------------------------

OBJECTS = st.sampled_from([object(), [], {}, set(), (), 1j, bytearray(b"x"), b"", b"5"])
TEXT = st.text(max_size=12)  # "" included
NON_FINITE = st.sampled_from([math.nan, math.inf, -math.inf])
NEGATIVE = st.one_of(
    st.integers(min_value=-(2**80), max_value=-1),
    st.floats(max_value=-1e-9, allow_nan=False, allow_infinity=False),
)
BOOLS = st.booleans()


def huge_ints(limit: int) -> st.SearchStrategy[int]:
    return st.integers(min_value=limit + 1, max_value=2**80)


HUGE_SECONDS = st.one_of(
    st.floats(min_value=MAX_SECONDS + 1e-3, allow_nan=False, allow_infinity=False),
    huge_ints(int(MAX_SECONDS)),
)
# Anything but a finite number (bools are not numbers here).
NOT_A_NUMBER = st.one_of(OBJECTS, TEXT, NON_FINITE, BOOLS, st.none())


def seconds(positive: bool, optional: bool = False) -> st.SearchStrategy[Any]:
    bad = [NOT_A_NUMBER, HUGE_SECONDS, NEGATIVE]
    if positive:
        bad.append(st.sampled_from([0, 0.0]))
    strategy = st.one_of(*bad)
    return strategy.filter(lambda v: v is not None) if optional else strategy


def counts(low: int, high: int, optional: bool = False) -> st.SearchStrategy[Any]:
    below = st.integers(min_value=-(2**80), max_value=low - 1)
    floats = st.floats(allow_nan=True, allow_infinity=True)
    strategy = st.one_of(OBJECTS, TEXT, BOOLS, st.none(), floats, below, huge_ints(high))
    return strategy.filter(lambda v: v is not None) if optional else strategy


NOT_A_BOOL = st.one_of(OBJECTS, TEXT, st.none(), st.integers(), st.floats())
BLANK = st.text(alphabet=" \t\n", max_size=4)
NOT_CALLABLE = st.one_of(OBJECTS, TEXT, st.integers(), st.floats())


def ratio(low: float, high: float) -> st.SearchStrategy[Any]:
    outside = st.one_of(
        st.floats(max_value=low, exclude_max=True, allow_nan=False, allow_infinity=False),
        st.floats(min_value=high, exclude_min=True, allow_nan=False, allow_infinity=False),
    )
    return st.one_of(NOT_A_NUMBER, outside)


BAD_OPTION = st.one_of(
    st.tuples(
        st.sampled_from(["grpc.x", b"grpc.x"]),
        st.one_of(
            st.none(),
            OBJECTS.filter(lambda v: not isinstance(v, bytes)),
            st.floats(),
            huge_ints(2**31 - 1),
            st.integers(max_value=-(2**31) - 1),
            st.text(min_size=1).map(lambda s: s + "\0"),
        ),
    ),
    st.tuples(st.one_of(st.none(), st.integers(), st.just(""), st.just(b"")), st.integers(0, 9)),
    st.tuples(st.text()),  # not a pair
    TEXT,
    st.integers(),
)

BAD: dict[str, st.SearchStrategy[Any]] = {
    "target": st.one_of(
        BLANK,
        st.none(),
        st.integers(),
        st.floats(),
        st.binary(),
        st.just([]),
        st.lists(st.one_of(BLANK, st.none(), st.integers()), min_size=1, max_size=3),
        st.sampled_from(["dsn:///x:1", " 127.0.0.1:1", "a b:1", "http://h:1", "h:99999", "h:x"]),
    ),
    "size": counts(1, MAX_SIZE),
    "credentials": st.one_of(TEXT, st.binary(), st.integers(), OBJECTS, BOOLS),
    "insecure": NOT_A_BOOL,
    "options": st.one_of(TEXT, st.integers(), st.lists(BAD_OPTION, min_size=1, max_size=3)),
    "interceptors": st.one_of(TEXT, st.integers(), st.lists(NOT_CALLABLE, min_size=1, max_size=3)),
    "strategy": st.one_of(
        TEXT.filter(lambda s: s not in STRATEGY_NAMES), st.integers(), st.none(), OBJECTS
    ),
    "connect_timeout": seconds(positive=True),
    "backoff_initial": seconds(positive=True),
    "backoff_multiplier": ratio(1.0, 100.0),
    "backoff_jitter": ratio(0.0, 1.0),
    "backoff_max": seconds(positive=True),
    "retire_grace": seconds(positive=False),
    "track_in_flight": NOT_A_BOOL,
    "name": st.one_of(BLANK, st.integers(), st.binary(), OBJECTS),
    "listeners": st.one_of(TEXT, st.integers(), st.lists(NOT_CALLABLE, min_size=1, max_size=3)),
    "status_interval": seconds(positive=False),
    "telemetry_sample_rate": counts(0, MAX_COUNT),
    "suppress_connection_errors": NOT_A_BOOL,
    "keepalive_time": seconds(positive=True, optional=True),
    "keepalive_timeout": seconds(positive=True),
    "keepalive_without_calls": NOT_A_BOOL,
    "health_check_interval": seconds(positive=False),
    "health_check_timeout": seconds(positive=True),
    "health_check_service": st.one_of(st.none(), st.integers(), st.binary(), OBJECTS),
    "eject_after_unavailable": counts(0, MAX_COUNT),
    "max_connection_age": seconds(positive=True, optional=True),
    "primer": NOT_CALLABLE,
    "autoscale": NOT_A_BOOL,
    "autoscale_interval": seconds(positive=True),
    "min_size": counts(1, MAX_SIZE),
    "max_size": counts(1, MAX_SIZE, optional=True),
    "min_rpcs_per_channel": counts(1, MAX_COUNT),
    "max_rpcs_per_channel": counts(1, MAX_COUNT),
    "max_resize_delta": counts(1, MAX_SIZE),
    "stream_limit": counts(1, MAX_COUNT),
    # Being added for issue 10 (grpc.Compression or None): kept here so it is covered.
    "compression": st.one_of(TEXT, st.integers(), OBJECTS, BOOLS),
    "fork_drain_timeout": seconds(positive=False),
    "resolve_interval": seconds(positive=False),
    "resolver": st.one_of(TEXT, st.integers(), st.sampled_from([object(), [], {}, 1j])),
    "spread": st.one_of(TEXT.filter(lambda s: s not in ("balanced", "off")), st.integers(), BOOLS),
    "transparent_retry": NOT_A_BOOL,
    "retry": st.one_of(TEXT, st.integers(), OBJECTS, BOOLS, st.just({"max_attempts": 3})),
    "fleet_index": counts(0, MAX_COUNT, optional=True),
    "outlier_ejection": st.one_of(TEXT, st.integers(), OBJECTS, BOOLS, st.just({"interval": 1})),
    "hedging": st.one_of(TEXT, st.integers(), OBJECTS, BOOLS, st.just({"methods": ("/a.B/",)})),
}
FIELDS = [f.name for f in fields(PoolConfig)]


def test_every_field_has_bad_values() -> None:
    """The property test below covers every PoolConfig field: a new field needs an entry."""
    assert set(FIELDS) <= set(BAD), f"no bad values for {sorted(set(FIELDS) - set(BAD))}"


@SETTINGS
@given(data=st.data())
def test_bad_field_values_are_refused_before_any_thread(data: st.DataObject) -> None:
    """A bad value of any field: Pool() raises InvalidConfig whose message starts with
    the field's name, and no thread was started."""
    field = data.draw(st.sampled_from(FIELDS), label="field")
    value = data.draw(BAD[field], label="value")
    options: dict[str, Any] = {} if field in ("insecure", "credentials") else {"insecure": True}
    before = set(threading.enumerate())
    with pytest.raises(grpc_pool.InvalidConfig) as raised:
        if field == "target":
            grpc_pool.Pool(value, **options)
        else:
            grpc_pool.Pool("127.0.0.1:1", **options, **{field: value})
    message = str(raised.value)
    assert message.startswith((f"{field}=", f"{field} ")), message
    assert set(threading.enumerate()) <= before


# -- method arguments --------------------------------------------------------------------

UNHASHABLE = st.sampled_from([[], {}, set(), bytearray(b"k"), [1, 2]])
TIMEOUTS = seconds(positive=False).filter(lambda v: v is not None)


def method_calls(pool: grpc_pool.Pool) -> st.SearchStrategy[tuple[str, Any]]:
    """(argument name, a call of a public method with that argument bad)."""
    expected = pool.status().expected_size
    min_ready = st.one_of(counts(1, MAX_SIZE), st.integers(expected + 1, MAX_SIZE))
    return st.one_of(
        TIMEOUTS.map(lambda v: ("timeout", lambda: pool.get_channel(timeout=v))),
        UNHASHABLE.map(lambda v: ("key", lambda: pool.get_channel(key=v))),
        UNHASHABLE.map(lambda v: ("key", lambda: pool.get_channel(timeout=1.0, key=v))),
        TIMEOUTS.map(lambda v: ("timeout", lambda: pool.stub(lambda ch: ch, timeout=v))),
        st.one_of(TIMEOUTS, st.none()).map(lambda v: ("timeout", lambda: pool.wait_ready(v))),
        min_ready.map(lambda v: ("min_ready", lambda: pool.wait_ready(1.0, v))),
        TIMEOUTS.map(lambda v: ("grace", lambda: pool.close(grace=v))),
        counts(1, MAX_SIZE).map(lambda v: ("n", lambda: pool.scale_up(v))),
        st.integers(MAX_SIZE - expected + 1, MAX_SIZE).map(
            lambda v: ("n", lambda: pool.scale_up(v))
        ),
        counts(1, MAX_SIZE).map(lambda v: ("n", lambda: pool.scale_down(v))),
        st.integers(expected, MAX_SIZE).map(lambda v: ("n", lambda: pool.scale_down(v))),
        counts(1, MAX_SIZE).map(lambda v: ("size", lambda: pool.resize(v))),
    )


def test_bad_method_arguments_are_refused(make_pool: Any, server: EchoServer) -> None:
    """On a ready pool, a bad argument to get_channel, stub, wait_ready, close,
    scale_up, scale_down or resize raises InvalidConfig naming the argument; the
    pool is unchanged (same size, not closed) and no thread was started."""
    pool = make_pool(server.target, size=2)
    pool.wait_ready(timeout=10, min_ready=2)
    threads = set(pool_threads())

    @SETTINGS
    @given(case=st.data())
    def check(case: st.DataObject) -> None:
        name, run = case.draw(method_calls(pool), label="call")
        with pytest.raises(grpc_pool.InvalidConfig) as raised:
            run()
        message = str(raised.value)
        assert message.startswith(f"{name}=") or f">: {name}=" in message, message
        assert set(pool_threads()) == threads
        assert not pool.closed and pool.status().expected_size == 2

    check()
    assert pool.get_channel() in pool._snapshot
