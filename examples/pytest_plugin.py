"""Moved: the fixtures ship with the package as ``grpc_pool.testing.pytest_plugin``
(see docs/integrations.md). Kept so that ``pytest_plugins = ["examples.pytest_plugin"]``
in this repository still works: it loads the packaged plugin."""

pytest_plugins = ["grpc_pool.testing.pytest_plugin"]
