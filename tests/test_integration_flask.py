"""Flask integration (examples/flask_app.py): the real app on a threaded werkzeug
server on loopback, concurrent HTTP clients, a real gRPC echo backend."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from flask import Flask
from werkzeug.serving import BaseWSGIServer, make_server

from examples import flask_app
from grpc_pool.testing.echo import EchoServer

from .conftest import FAST, wait_until

SIZE = 3
CLIENTS = 8
REQUESTS_PER_CLIENT = 10
JOIN_TIMEOUT = 15.0
HTTP_TIMEOUT = 10.0


class HttpServer:
    """A real werkzeug threaded server for ``app`` on 127.0.0.1, a free port."""

    def __init__(self, app: Flask) -> None:
        self.server: BaseWSGIServer = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, name="http-server"
        )

    def __enter__(self) -> HttpServer:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server.shutdown()  # returns once serve_forever has left its loop
        self.server.server_close()
        self.thread.join(JOIN_TIMEOUT)
        assert not self.thread.is_alive(), "HTTP server thread did not stop"

    def get(self, path: str) -> tuple[int, dict[str, Any]]:
        """Status and JSON body; error statuses are returned, not raised."""
        try:
            with urllib.request.urlopen(self.url + path, timeout=HTTP_TIMEOUT) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            with error:
                return error.code, json.loads(error.read())


@pytest.fixture
def app(server: EchoServer) -> Iterator[Flask]:
    """The example app against the echo server; its pool closed at teardown."""
    app = flask_app.create_app(server.target, size=SIZE, **FAST)
    yield app
    flask_app.shutdown(app, grace=0)


def run_clients(count: int, work: Any) -> list[BaseException]:
    """Run ``work(i)`` on ``count`` threads started together; join them with a bound."""
    errors: list[BaseException] = []
    barrier = threading.Barrier(count, timeout=JOIN_TIMEOUT)

    def client(i: int) -> None:
        try:
            barrier.wait()
            work(i)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=client, args=(i,), name=f"client-{i}") for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(JOIN_TIMEOUT)
    assert not [t.name for t in threads if t.is_alive()], "client threads did not finish"
    return errors


def test_concurrent_requests_share_the_pool(app: Flask, server: EchoServer) -> None:
    """8 HTTP clients at once: every response carries its own payload back from the
    gRPC backend, and the backend saw at most ``SIZE`` connections (the one pool)."""
    app.extensions["grpc_pool"].wait_ready(timeout=10, min_ready=SIZE)
    results: dict[str, tuple[int, dict[str, Any]]] = {}
    lock = threading.Lock()

    with HttpServer(app) as http:

        def work(i: int) -> None:
            for n in range(REQUESTS_PER_CLIENT):
                message = f"c{i}-r{n}"
                reply = http.get(f"/echo/{message}")
                with lock:
                    results[message] = reply

        errors = run_clients(CLIENTS, work)
        health = http.get("/healthz")

    assert errors == []
    assert len(results) == CLIENTS * REQUESTS_PER_CLIENT
    assert all(reply == (200, {"echo": message}) for message, reply in results.items())
    assert server.calls == CLIENTS * REQUESTS_PER_CLIENT
    assert 1 <= len(server.peers) <= SIZE
    assert health == (200, {"expected_size": SIZE, "current_size": SIZE, "state": "healthy"})


def test_backend_down_answers_503(app: Flask, server: EchoServer) -> None:
    """With the backend gone the app answers 503 at once (healthz and handlers),
    not 500, and serves again once the backend is back on the same port."""
    pool = app.extensions["grpc_pool"]
    pool.wait_ready(timeout=10, min_ready=SIZE)
    with HttpServer(app) as http:
        assert http.get("/echo/before")[0] == 200
        server.stop()
        wait_until(lambda: pool.status().state == "down", what="pool down")
        status, body = http.get("/healthz")
        assert (status, body["state"], body["current_size"]) == (503, "down", 0)
        status, body = http.get("/echo/during")
        # A generic body: the pool's details (its target, the last error) are logged.
        assert (status, body) == (503, {"error": "backend unavailable"})
        assert server.target not in json.dumps(body)
        server.start()
        pool.wait_ready(timeout=10, min_ready=1)
        assert http.get("/echo/after") == (200, {"echo": "after"})


def test_stats_endpoint_shows_ages_and_wall_clock_times(app: Flask) -> None:
    """/stats gives each slot's age in seconds and its connect time as an ISO 8601
    UTC timestamp, never the monotonic connected_since, and no target."""
    pool = app.extensions["grpc_pool"]
    pool.wait_ready(timeout=10, min_ready=SIZE)
    with HttpServer(app) as http:
        status, body = http.get("/stats")
    assert status == 200 and body["state"] == "healthy" and len(body["slots"]) == SIZE
    for slot in body["slots"]:
        assert slot["connected_for_s"] >= 0
        assert datetime.fromisoformat(slot["connected_at"]).tzinfo is not None
        assert "connected_since" not in slot
    assert pool.stats().target not in json.dumps(body)
