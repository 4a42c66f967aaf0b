"""The deploy harness now lives in the package, ``grpc_pool.testing.deploy`` (so that
``python -m grpc_pool bench --deploy`` runs it from an installed copy); this name stays
for the tests and benchmarks that import it."""

from __future__ import annotations

from grpc_pool.testing.deploy import *  # noqa: F403
from grpc_pool.testing.deploy import __all__ as __all__
