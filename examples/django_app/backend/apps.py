"""The pool as an app-level resource: built in ``ready()`` from ``settings.GRPC_POOL``."""

from __future__ import annotations

import atexit

from django.apps import AppConfig, apps
from django.conf import settings

import grpc_pool

# At exit, RPCs still in flight get this long to finish.
CLOSE_GRACE = 5.0


class BackendConfig(AppConfig):
    name = "examples.django_app.backend"
    label = "backend"
    pool: grpc_pool.Pool | None = None

    def ready(self) -> None:
        # Django calls ready() once per process, after settings and apps are loaded
        # (in every worker of a multi-process server, and also for management commands).
        self.start_pool()

    def start_pool(self) -> grpc_pool.Pool:
        """Build the pool from ``settings.GRPC_POOL`` unless this process has one."""
        if self.pool is None:
            config = grpc_pool.PoolConfig.from_mapping(settings.GRPC_POOL)
            self.pool = grpc_pool.Pool.from_config(config)
            # Django has no shutdown signal: close at interpreter exit.
            atexit.register(self.close_pool)
        return self.pool

    def close_pool(self, grace: float = CLOSE_GRACE) -> None:
        """Close the pool now (tests, or a server's own shutdown hook); idempotent."""
        pool, self.pool = self.pool, None
        atexit.unregister(self.close_pool)
        if pool is not None:
            pool.close(grace)


def get_pool() -> grpc_pool.Pool:
    """This process's backend pool; ``PoolClosed`` after ``close_pool()``."""
    config = apps.get_app_config("backend")
    assert isinstance(config, BackendConfig)
    if config.pool is None:
        raise grpc_pool.PoolClosed("the backend pool is closed")
    return config.pool
