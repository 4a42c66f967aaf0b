"""Django integration (examples/django_app): the pool built by AppConfig.ready()
from settings.GRPC_POOL, views calling a real gRPC echo backend, driven by
django.test.Client from concurrent threads."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import django
import pytest
from django.apps import apps
from django.conf import settings
from django.test import Client, override_settings

import grpc_pool
from examples.django_app import settings as example_settings
from examples.django_app.backend.apps import BackendConfig
from grpc_pool.testing.echo import EchoServer

from .conftest import FAST

SIZE = 3
CLIENTS = 8
REQUESTS_PER_CLIENT = 10
JOIN_TIMEOUT = 15.0


def backend_config() -> BackendConfig:
    config = apps.get_app_config("backend")
    assert isinstance(config, BackendConfig)
    return config


@pytest.fixture
def backend(server: EchoServer) -> Iterator[grpc_pool.Pool]:
    """Django set up with the example settings, GRPC_POOL pointing at the echo
    server; the app's pool is closed at teardown.

    Settings are configured once per process (Django allows no more): the first
    use runs django.setup(), whose BackendConfig.ready() builds the pool; later
    uses override GRPC_POOL and start the pool again the same way.
    """
    grpc_settings = {"target": server.target, "size": SIZE, **FAST}
    if not settings.configured:
        values = {k: getattr(example_settings, k) for k in dir(example_settings) if k.isupper()}
        values["ALLOWED_HOSTS"] = [*values["ALLOWED_HOSTS"], "testserver"]  # the test Client's
        settings.configure(**{**values, "GRPC_POOL": grpc_settings})
        django.setup()
    else:
        with override_settings(GRPC_POOL=grpc_settings):
            backend_config().start_pool()
    pool = backend_config().pool
    assert pool is not None and pool.config.target == server.target
    yield pool
    backend_config().close_pool(grace=0)


def test_concurrent_clients_share_the_app_pool(backend: grpc_pool.Pool, server: EchoServer) -> None:
    """8 threads, each with its own django.test.Client: every response carries its
    own payload back from the gRPC backend, through the one pool of the app (at
    most SIZE connections on the server)."""
    backend.wait_ready(timeout=10, min_ready=SIZE)
    results: dict[str, tuple[int, Any]] = {}
    errors: list[BaseException] = []
    lock = threading.Lock()
    barrier = threading.Barrier(CLIENTS, timeout=JOIN_TIMEOUT)

    def client(i: int) -> None:
        try:
            http = Client()
            barrier.wait()
            for n in range(REQUESTS_PER_CLIENT):
                message = f"c{i}-r{n}"
                response = http.get(f"/echo/{message}")
                with lock:
                    results[message] = (response.status_code, response.json())
        except BaseException as error:
            errors.append(error)

    threads = [
        threading.Thread(target=client, args=(i,), name=f"client-{i}") for i in range(CLIENTS)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(JOIN_TIMEOUT)
    assert not [t.name for t in threads if t.is_alive()], "client threads did not finish"

    assert errors == []
    assert len(results) == CLIENTS * REQUESTS_PER_CLIENT
    assert all(reply == (200, {"echo": message}) for message, reply in results.items())
    assert server.calls == CLIENTS * REQUESTS_PER_CLIENT
    assert 1 <= len(server.peers) <= SIZE
    health = Client().get("/healthz")
    assert (health.status_code, health.json()) == (
        200,
        {"expected_size": SIZE, "current_size": SIZE, "state": "healthy"},
    )


def test_closed_pool_answers_503_and_bad_settings_fail_at_start(
    backend: grpc_pool.Pool, server: EchoServer
) -> None:
    """After close_pool() the views answer 503 (not 500); a typo in GRPC_POOL makes
    start_pool() (so startup) fail with InvalidConfig naming the key."""
    backend.wait_ready(timeout=10)
    assert Client().get("/echo/x").json() == {"echo": "x"}
    backend_config().close_pool(grace=0)
    assert Client().get("/echo/x").status_code == 503
    assert Client().get("/healthz").status_code == 503
    with (
        override_settings(GRPC_POOL={"target": server.target, "sise": 2}),
        pytest.raises(grpc_pool.InvalidConfig, match=r"unknown key.*'sise'"),
    ):
        backend_config().start_pool()
    assert backend_config().pool is None
