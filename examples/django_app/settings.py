"""Settings of the example project; ``GRPC_POOL`` configures the backend pool."""

from __future__ import annotations

import os
from typing import Any

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-only-not-a-secret")
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS = ["examples.django_app.backend"]
MIDDLEWARE: list[str] = []
ROOT_URLCONF = "examples.django_app.urls"
DATABASES: dict[str, Any] = {}
USE_TZ = True

# PoolConfig fields by name (PoolConfig.from_mapping): an unknown key or a bad value
# stops the process at startup with an error naming it.
GRPC_POOL: dict[str, Any] = {
    "target": os.environ.get("BACKEND_TARGET", "127.0.0.1:50051"),
    "size": 4,
    "insecure": True,
}
