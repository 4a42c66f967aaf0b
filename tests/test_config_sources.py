"""PoolConfig.from_mapping (settings dicts) and PoolConfig.from_env (environment
variables): good values arrive typed, and every bad input raises InvalidConfig
naming the key or variable, the value and what is allowed."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Optional

import grpc
import pytest
from hypothesis import given
from hypothesis import strategies as st

import grpc_pool
from grpc_pool import InvalidConfig, PoolConfig
from grpc_pool._config.validate import MAX_SECONDS, MAX_SIZE

TARGET = {"GRPC_POOL_TARGET": "127.0.0.1:50051"}
# Fields with a text form, as from_env derives them (fields added later included).
TEXT_FIELDS = [
    f.name
    for f in dataclasses.fields(PoolConfig)
    if f.name
    not in (
        "credentials",
        "options",
        "interceptors",
        "listeners",
        "primer",
        "compression",
        "retry",
        "hedging",
        "resolver",
        "outlier_ejection",
    )
]


class PassThrough(grpc.UnaryUnaryClientInterceptor):
    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(details, request)


# -- from_mapping ----------------------------------------------------------------------


def test_from_mapping_builds_the_same_config_as_the_constructor() -> None:
    """A settings dict gives exactly PoolConfig(**dict), objects included."""
    interceptor = PassThrough()
    settings: dict[str, Any] = {
        "target": "orders.internal:50051",
        "size": 4,
        "insecure": True,
        "options": [("grpc.keepalive_time_ms", 10_000)],
        "interceptors": [interceptor],
        "strategy": "power_of_two",
        "connect_timeout": 3,
        "retire_grace": 0.5,
        "name": "orders",
    }
    config = PoolConfig.from_mapping(settings)
    assert config == PoolConfig(**settings)
    assert config.size == 4 and config.insecure is True
    assert config.options == (("grpc.keepalive_time_ms", 10_000),)
    assert config.interceptors == (interceptor,)


def test_from_mapping_target_only_keeps_defaults() -> None:
    """Keys left out keep the field defaults."""
    assert PoolConfig.from_mapping({"target": "h:1"}) == PoolConfig("h:1")


@pytest.mark.parametrize("key", ["sise", "TARGET", "pool_size", 3])
def test_from_mapping_unknown_key_names_it_and_lists_the_allowed(key: object) -> None:
    """An unknown key (a typo, another case, not a str) names itself and every field."""
    with pytest.raises(InvalidConfig) as info:
        PoolConfig.from_mapping({"target": "h:1", key: 4})  # type: ignore[dict-item]
    message = str(info.value)
    assert repr(key) in message
    assert "allowed" in message
    assert all(f.name in message for f in dataclasses.fields(PoolConfig))
    assert isinstance(info.value, ValueError)


def test_from_mapping_missing_target() -> None:
    """A dict without the required target says so (not a TypeError)."""
    with pytest.raises(InvalidConfig, match=r"missing key\(s\) 'target'.*host:port"):
        PoolConfig.from_mapping({"size": 4, "insecure": True})


@pytest.mark.parametrize(
    ("key", "value"),
    [("size", "4"), ("size", 0), ("insecure", "yes"), ("strategy", "fastest"), ("target", "")],
)
def test_from_mapping_values_are_checked_by_the_constructor(key: str, value: object) -> None:
    """Values are not converted: a wrong type or range fails like PoolConfig(...)."""
    with pytest.raises(InvalidConfig) as info:
        PoolConfig.from_mapping({"target": "h:1", key: value})
    assert f"{key}={value!r} is not allowed: expected" in str(info.value)


@pytest.mark.parametrize("settings", [None, "target=h:1", [("target", "h:1")]])
def test_from_mapping_refuses_a_non_mapping(settings: object) -> None:
    """Only a mapping is accepted."""
    with pytest.raises(InvalidConfig, match=r"settings=.* is not allowed: expected a mapping"):
        PoolConfig.from_mapping(settings)  # type: ignore[arg-type]


# -- from_env: good values -------------------------------------------------------------


def test_from_env_reads_every_text_field() -> None:
    """Each str/int/float/bool field is read from <prefix><FIELD> and typed."""
    environ = {
        "GRPC_POOL_TARGET": "dns:///orders:50051",
        "GRPC_POOL_SIZE": "7",
        "GRPC_POOL_INSECURE": "true",
        "GRPC_POOL_STRATEGY": "random",
        "GRPC_POOL_CONNECT_TIMEOUT": "2.5",
        "GRPC_POOL_BACKOFF_INITIAL": "0.1",
        "GRPC_POOL_BACKOFF_MULTIPLIER": "2",
        "GRPC_POOL_BACKOFF_JITTER": "0",
        "GRPC_POOL_BACKOFF_MAX": "30",
        "GRPC_POOL_RETIRE_GRACE": "1e-1",
        "GRPC_POOL_TRACK_IN_FLIGHT": "off",
        "GRPC_POOL_NAME": "orders",
        "PATH": "/usr/bin",  # other variables are ignored
        "GRPC_POOLS": "x",
    }
    config = PoolConfig.from_env(environ=environ)
    assert config == PoolConfig(
        "dns:///orders:50051",
        size=7,
        insecure=True,
        strategy="random",
        connect_timeout=2.5,
        backoff_initial=0.1,
        backoff_multiplier=2.0,
        backoff_jitter=0.0,
        backoff_max=30.0,
        retire_grace=0.1,
        track_in_flight=False,
        name="orders",
    )
    assert type(config.size) is int and type(config.backoff_max) is float


def test_from_env_unset_variables_keep_defaults() -> None:
    """Only the target set: every other field has its default."""
    assert PoolConfig.from_env(environ=TARGET) == PoolConfig(TARGET["GRPC_POOL_TARGET"])


@pytest.mark.parametrize(
    ("text", "value"),
    [
        *[(t, True) for t in ("1", "true", "TRUE", "True", "yes", "Yes", "on", "ON", " on ")],
        *[(t, False) for t in ("0", "false", "FALSE", "no", "NO", "off", "Off", "\tfalse\n")],
    ],
)
def test_from_env_bools(text: str, value: bool) -> None:
    """1/0, true/false, yes/no, on/off in any case (surrounding blanks ignored)."""
    config = PoolConfig.from_env(environ={**TARGET, "GRPC_POOL_INSECURE": text})
    assert config.insecure is value


def test_from_env_strips_blanks_and_reads_empty_optional_as_none() -> None:
    """Blanks around values are dropped; an empty value of an optional field is None."""
    config = PoolConfig.from_env(
        environ={"GRPC_POOL_TARGET": " h:1\n", "GRPC_POOL_SIZE": " 3 ", "GRPC_POOL_NAME": ""}
    )
    assert (config.target, config.size, config.name) == ("h:1", 3, None)


def test_from_env_custom_prefix_and_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """environ defaults to os.environ; another prefix reads other variables."""
    monkeypatch.setenv("ORDERS_TARGET", "orders:1")
    monkeypatch.setenv("ORDERS_SIZE", "2")
    monkeypatch.setenv("ORDERS_INSECURE", "yes")
    config = PoolConfig.from_env("ORDERS_")
    assert (config.target, config.size, config.insecure) == ("orders:1", 2, True)


def test_from_env_config_starts_a_pool(server: Any) -> None:
    """A config read from the environment drives a real pool."""
    config = PoolConfig.from_env(
        environ={
            "GRPC_POOL_TARGET": server.target,
            "GRPC_POOL_SIZE": "2",
            "GRPC_POOL_INSECURE": "1",
        }
    )
    with grpc_pool.Pool.from_config(config) as pool:
        assert pool.wait_ready(timeout=10, min_ready=2).state == "healthy"


def test_from_env_reads_fields_added_later() -> None:
    """Fields are found from the dataclass, not a list: a subclass's new fields,
    with postponed (string) or real annotations, are read with no change to from_env."""

    @dataclasses.dataclass(frozen=True)
    class Extended(PoolConfig):
        keepalive_ms: int | None = None
        verbose: bool = False
        ratio: Optional[float] = None  # noqa: UP045 (the Optional[...] spelling is parsed too)
        hosts: tuple[str, ...] = ()  # no text form: never read

    Real = dataclasses.make_dataclass(
        "Real",
        [("limit", int | None, None), ("label", str, "x"), ("tags", list[str], None)],
        bases=(PoolConfig,),
        frozen=True,
    )
    config = Extended.from_env(
        environ={**TARGET, "GRPC_POOL_KEEPALIVE_MS": "100", "GRPC_POOL_VERBOSE": "on"}
    )
    assert (config.keepalive_ms, config.verbose, config.ratio) == (100, True, None)
    config = Extended.from_env(environ={**TARGET, "GRPC_POOL_RATIO": "0.5"})
    assert config.ratio == 0.5
    with pytest.raises(InvalidConfig, match="GRPC_POOL_HOSTS='a' is not allowed"):
        Extended.from_env(environ={**TARGET, "GRPC_POOL_HOSTS": "a"})
    real = Real.from_env(environ={**TARGET, "GRPC_POOL_LIMIT": "5", "GRPC_POOL_LABEL": "y"})
    assert (real.limit, real.label) == (5, "y")
    with pytest.raises(InvalidConfig, match="GRPC_POOL_TAGS"):
        Real.from_env(environ={**TARGET, "GRPC_POOL_TAGS": "a"})


@given(size=st.integers(min_value=1, max_value=MAX_SIZE), grace=st.floats(0, MAX_SECONDS))
def test_from_env_round_trips_numbers(size: int, grace: float) -> None:
    """Any valid int and float written as text reads back equal."""
    config = PoolConfig.from_env(
        environ={**TARGET, "GRPC_POOL_SIZE": str(size), "GRPC_POOL_RETIRE_GRACE": repr(grace)}
    )
    assert (config.size, config.retire_grace) == (size, grace)


# -- from_env: errors ------------------------------------------------------------------

CONVERSION_ERRORS = [
    ("GRPC_POOL_SIZE", "four", "an int"),
    ("GRPC_POOL_SIZE", "4.0", "an int"),
    ("GRPC_POOL_SIZE", "", "an int"),
    ("GRPC_POOL_SIZE", "true", "an int"),
    ("GRPC_POOL_CONNECT_TIMEOUT", "5s", "a number"),
    ("GRPC_POOL_CONNECT_TIMEOUT", "", "a number"),
    ("GRPC_POOL_BACKOFF_MULTIPLIER", "1,6", "a number"),
    ("GRPC_POOL_INSECURE", "maybe", "1/0, true/false, yes/no, on/off"),
    ("GRPC_POOL_INSECURE", "2", "1/0, true/false, yes/no, on/off"),
    ("GRPC_POOL_INSECURE", "", "1/0, true/false, yes/no, on/off"),
    ("GRPC_POOL_TRACK_IN_FLIGHT", "enabled", "1/0, true/false, yes/no, on/off"),
]


@pytest.mark.parametrize(("variable", "text", "allowed"), CONVERSION_ERRORS)
def test_from_env_conversion_error_names_variable_value_and_allowed(
    variable: str, text: str, allowed: str
) -> None:
    """Text that does not parse as the field's type: the message names the
    variable, the raw value and the allowed forms."""
    with pytest.raises(InvalidConfig) as info:
        PoolConfig.from_env(environ={**TARGET, variable: text})
    message = str(info.value)
    assert message.startswith(f"{variable}={text!r} is not allowed: expected ")
    assert allowed in message
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("variable", "text", "field"),
    [
        ("GRPC_POOL_SIZE", "0", "size=0"),
        ("GRPC_POOL_SIZE", "-2", "size=-2"),
        ("GRPC_POOL_CONNECT_TIMEOUT", "nan", "connect_timeout=nan"),
        ("GRPC_POOL_BACKOFF_MAX", "inf", "backoff_max=inf"),
        ("GRPC_POOL_BACKOFF_JITTER", "1.5", "backoff_jitter=1.5"),
        ("GRPC_POOL_STRATEGY", "least_loaded", "strategy='least_loaded'"),
        ("GRPC_POOL_TARGET", "  ", "target=''"),
        ("GRPC_POOL_RETIRE_GRACE", "-1", "retire_grace=-1.0"),
    ],
)
def test_from_env_value_refused_by_constructor_names_field_and_variable(
    variable: str, text: str, field: str
) -> None:
    """A value that parses but is out of range: the constructor's message (field,
    value, allowed) plus the variable it came from."""
    with pytest.raises(InvalidConfig) as info:
        PoolConfig.from_env(environ={**TARGET, variable: text})
    message = str(info.value)
    assert message.startswith(f"{field} is not allowed: expected ")
    assert f"(from {variable}={text!r})" in message


def test_from_env_cross_field_error_is_the_constructors() -> None:
    """A rule over two fields (backoff_max >= backoff_initial) names both."""
    environ = {**TARGET, "GRPC_POOL_BACKOFF_INITIAL": "10", "GRPC_POOL_BACKOFF_MAX": "5"}
    with pytest.raises(InvalidConfig, match=r"backoff_max=5\.0 .*backoff_initial \(10\.0\)"):
        PoolConfig.from_env(environ=environ)


def test_from_env_missing_target() -> None:
    """No <prefix>TARGET: the variable is named."""
    with pytest.raises(InvalidConfig, match="GRPC_POOL_TARGET is not set: expected"):
        PoolConfig.from_env(environ={"GRPC_POOL_SIZE": "3"})


def test_from_env_unknown_variable_lists_the_allowed() -> None:
    """A variable with the prefix that names no field (a typo) is refused, listing
    every variable that is read."""
    with pytest.raises(InvalidConfig) as info:
        PoolConfig.from_env(environ={**TARGET, "GRPC_POOL_SIZ": "3"})
    message = str(info.value)
    assert "unknown environment variable GRPC_POOL_SIZ;" in message
    assert all(f"GRPC_POOL_{name.upper()}" in message for name in TEXT_FIELDS)


@pytest.mark.parametrize("name", ["credentials", "options", "interceptors", "compression"])
def test_from_env_field_without_text_form_is_refused(name: str) -> None:
    """credentials, options, interceptors are never read from the environment:
    setting one is an error that says to set it in code."""
    variable = f"GRPC_POOL_{name.upper()}"
    with pytest.raises(InvalidConfig) as info:
        PoolConfig.from_env(environ={**TARGET, variable: "x"})
    message = str(info.value)
    assert message.startswith(f"{variable}='x' is not allowed: {name} has no text form")
    assert "dataclasses.replace" in message


@pytest.mark.parametrize("prefix", ["", None, 5])
def test_from_env_bad_prefix(prefix: object) -> None:
    """The prefix must be a non-empty str."""
    with pytest.raises(InvalidConfig, match=r"prefix=.* is not allowed"):
        PoolConfig.from_env(prefix, environ=TARGET)  # type: ignore[arg-type]


def test_from_env_then_replace_sets_fields_without_text_form() -> None:
    """The documented way to add credentials or options: dataclasses.replace,
    which validates again."""
    config = dataclasses.replace(
        PoolConfig.from_env(environ=TARGET), options=[("grpc.max_send_message_length", 1)]
    )
    assert config.options == (("grpc.max_send_message_length", 1),)
    with pytest.raises(InvalidConfig):
        dataclasses.replace(config, size=math.nan)
