"""The public surface is pinned: additions and removals are deliberate."""

from __future__ import annotations

import textwrap

import grpc

import grpc_pool

EVENTS = {
    "AutoscaleEvent",
    "BackendEjectedEvent",
    "BackendUnejectedEvent",
    "StreamLimitEvent",
    "ChannelConnectedEvent",
    "ChannelDisconnectedEvent",
    "ConnectionFailedEvent",
    "GetChannelEvent",
    "HealthCheckEvent",
    "PoolClosedEvent",
    "PoolEvent",
    "PoolStartedEvent",
    "ReconnectScheduledEvent",
    "ResizeEvent",
    "ResolvedEvent",
    "ScaleDownEvent",
    "ScaleEvent",
    "ScaleUpEvent",
    "StatusEvent",
}
EXPECTED = EVENTS | {
    "ChannelRetired",
    "ChannelSignals",
    "BackendStats",
    "EjectionStats",
    "GrpcPoolError",
    "InvalidConfig",
    "NoChannelAvailable",
    "OutlierEjection",
    "Pool",
    "PoolClosed",
    "PoolChannel",
    "PoolConfig",
    "PoolStats",
    "PoolStatus",
    "PoolTimeout",
    "HedgingPolicy",
    "RetryPolicy",
    "PooledChannel",
    "ScalingInProgress",
    "SlotStats",
    "Strategy",
    "StrategyError",
    "WouldEmptyPool",
    "__version__",
    "insecure_channel",
    "secure_channel",
}


def test_all_is_pinned() -> None:
    """grpc_pool.__all__ is exactly the documented public names, all importable."""
    assert set(grpc_pool.__all__) == EXPECTED
    for name in grpc_pool.__all__:
        assert hasattr(grpc_pool, name), name


def test_testing_module_surface_and_docstring_example() -> None:
    """grpc_pool.testing exports the echo server and its methods, shown under the
    public name, and its docstring example runs as written."""
    import grpc_pool.testing

    assert set(grpc_pool.testing.__all__) == {
        "CHAT",
        "COLLECT",
        "ECHO",
        "ECHO_STREAM",
        "FAIL",
        "PEER",
        "SLOW",
        "EchoServer",
    }
    assert grpc_pool.testing.EchoServer.__module__ == "grpc_pool.testing"
    doc = grpc_pool.testing.__doc__ or ""
    example = textwrap.dedent(doc.split("\n\n", 1)[1].split("\n\nMethods")[0])
    assert "EchoServer()" in example
    exec(compile(example, "grpc_pool.testing example", "exec"), {})


def test_public_classes_live_in_grpc_pool() -> None:
    """Public classes show as grpc_pool.X, not as their private module."""
    for name in EXPECTED - {"__version__"}:
        assert getattr(grpc_pool, name).__module__ == "grpc_pool", name


def test_pool_methods_named_by_the_contract() -> None:
    """The pool API other code relies on exists with these names."""
    for method in (
        "from_config",
        "get_channel",
        "wait_ready",
        "status",
        "stats",
        "scale_up",
        "scale_down",
        "resize",
        "close",
        "__enter__",
        "__exit__",
    ):
        assert callable(getattr(grpc_pool.Pool, method)), method
    assert isinstance(grpc_pool.Pool.channel, property)


def test_error_hierarchy() -> None:
    """One root; argument errors are ValueErrors, timeouts are TimeoutErrors."""
    for name in (
        "ChannelRetired",
        "InvalidConfig",
        "NoChannelAvailable",
        "PoolClosed",
        "PoolTimeout",
        "ScalingInProgress",
        "StrategyError",
        "WouldEmptyPool",
    ):
        assert issubclass(getattr(grpc_pool, name), grpc_pool.GrpcPoolError)
    assert issubclass(grpc_pool.InvalidConfig, ValueError)
    assert issubclass(grpc_pool.WouldEmptyPool, grpc_pool.InvalidConfig)
    assert issubclass(grpc_pool.PoolTimeout, TimeoutError)
    assert issubclass(grpc_pool.PooledChannel, grpc.Channel)
    assert issubclass(grpc_pool.PoolChannel, grpc.Channel)
    # "No channel" and "closed" errors are also finished gRPC calls: code that
    # catches grpc.RpcError (GAPIC retries, user handlers) reads code()/details().
    for error, code in (
        (grpc_pool.NoChannelAvailable("none"), grpc.StatusCode.UNAVAILABLE),
        (grpc_pool.ChannelRetired("retired"), grpc.StatusCode.UNAVAILABLE),
        (grpc_pool.PoolClosed("closed"), grpc.StatusCode.CANCELLED),
    ):
        assert isinstance(error, grpc.RpcError) and isinstance(error, grpc.Call)
        assert isinstance(error, grpc_pool.GrpcPoolError)
        assert error.code() is code and error.details() == str(error)
        assert error.trailing_metadata() == () and not error.is_active()
