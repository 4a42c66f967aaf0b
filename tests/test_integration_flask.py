"""Flask integration (examples/flask_app.py): the real app on a threaded werkzeug
server on loopback, concurrent HTTP clients, a real gRPC echo backend."""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from flask import Flask, has_request_context, request
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


# Two backends, one killed under load (test_a_backend_killed_under_load_...).
TWO_SIZE = 4  # 2 slots per backend
LOAD_CLIENTS = 8
LOAD_REQUESTS = 60  # per client: 480 in all
# Backend A is killed after this many responses, restarted (the pool whole again)
# before the next: three kills in one run, as the refused window after a kill is short.
KILLS = (80, 200, 320)
LOAD_DEADLINE = 60.0  # the whole run, every client thread and the killer
# An RPC picked onto a channel whose backend was already gone: it never reached one.
REFUSED = (
    "failed to connect to all addresses",
    "connections to all backends failing",
    "Connection refused",
)
# An RPC in flight on the killed backend when it went away.
# "Cancelling all calls" is the debug text of the GOAWAY a grpc server sends from
# stop(None) to the calls it cancels (grpcio logs "Got goaway ... Cancelling all calls").
IN_FLIGHT = (
    "Socket closed",
    "Stream removed",
    "Connection reset",
    "Cancelling all calls",
    "StatusCode.CANCELLED",
)


class LogByPath(logging.Handler):
    """Keeps the app's log messages by the HTTP path being handled (logging runs in
    the request's thread, inside its request context): the gRPC details of each
    non-200 answer, which the app logs and keeps out of the HTTP body."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.by_path: dict[str, list[str]] = {}
        self._lock = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        if has_request_context():
            with self._lock:
                self.by_path.setdefault(request.path, []).append(record.getMessage())


def classify(status: int | None, body: Any, logged: list[str]) -> str:
    """ "ok", "refused" (never reached a backend), "in_flight" (lost with the killed
    backend), or "other" for an HTTP answer and what the app logged for it."""
    if status == 200:
        return "ok"
    text = " ".join(logged) + " " + json.dumps(body)
    if status == 503 or any(marker in text for marker in REFUSED):
        return "refused"
    if status == 502 and any(marker in text for marker in IN_FLIGHT):
        return "in_flight"
    return "other"


def test_a_backend_killed_under_load_fails_only_its_in_flight_requests() -> None:
    """The example app over two backends (target ``ipv4:P1,P2``, 2 slots each), 8
    HTTP clients x 60 echo requests, backend A stopped abruptly (grace None) after
    80, 200 and 320 responses while the load runs (restarted, the pool whole again,
    between kills). Guarantees: every request gets an HTTP
    answer; none fails with a refused/never-reached error (503, "failed to connect
    to all addresses", "Connection refused"): requests picked onto A's channels
    after the kill go to B; only RPCs in flight on A at the kill may fail ("Socket
    closed", "Stream removed", "Cancelling all calls", CANCELLED), at most one per
    client per kill; every other
    answer is 200 with its own payload. Counts printed (``pytest -s``)."""
    a, b = EchoServer().start(), EchoServer().start()
    target = f"ipv4:127.0.0.1:{a.port},127.0.0.1:{b.port}"
    app = flask_app.create_app(target, size=TWO_SIZE, **FAST)
    handler = LogByPath()
    flask_app.log.addHandler(handler)
    # (message, status, body, kills done when it was sent)
    results: list[tuple[str, int | None, Any, int]] = []
    progress = threading.Condition()
    kills: list[int] = []  # the response count at each kill
    killer_errors: list[str] = []
    deadline = time.monotonic() + LOAD_DEADLINE
    try:
        pool = app.extensions["grpc_pool"]
        pool.wait_ready(timeout=10, min_ready=TWO_SIZE)
        wait_until(
            lambda: sorted(s.ready for s in pool.stats().backends) == [2, 2],
            what="2 ready slots on each backend",
        )
        with HttpServer(app) as http:

            def client(i: int) -> None:
                for n in range(LOAD_REQUESTS):
                    if time.monotonic() > deadline:
                        return
                    message = f"c{i}-r{n}"
                    kills_done = len(kills)
                    try:
                        status, body = http.get(f"/echo/{message}")
                    except Exception as error:  # no HTTP answer at all: recorded
                        status, body = None, repr(error)
                    with progress:
                        results.append((message, status, body, kills_done))
                        progress.notify_all()

            def whole() -> bool:
                return sorted(s.ready for s in pool.stats().backends) == [2, 2]

            def killer() -> None:
                for n, at in enumerate(KILLS):
                    with progress:
                        left = max(0.0, deadline - time.monotonic())
                        if not progress.wait_for(lambda at=at: len(results) >= at, left):
                            killer_errors.append(f"load ended before kill {n + 1}")
                            return
                    a.stop(None)  # no grace: in-flight RPCs cancelled, sockets closed
                    with progress:
                        kills.append(len(results))
                    if n == len(KILLS) - 1:
                        return
                    with progress:  # A down while 40 more responses come
                        progress.wait_for(lambda at=at: len(results) >= at + 40, 10.0)
                    a.start()  # same port
                    stop_at = min(deadline, time.monotonic() + 10.0)
                    while not whole():
                        if time.monotonic() > stop_at:
                            killer_errors.append(f"pool not whole after restart {n + 1}")
                            return
                        time.sleep(0.01)

            threads = [threading.Thread(target=killer, name="killer")]
            threads += [
                threading.Thread(target=client, args=(i,), name=f"load-client-{i}")
                for i in range(LOAD_CLIENTS)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(max(0.1, deadline + JOIN_TIMEOUT - time.monotonic()))
            assert not [t.name for t in threads if t.is_alive()], "load threads did not end"
            status_after = pool.status()
    finally:
        flask_app.log.removeHandler(handler)
        flask_app.shutdown(app, grace=0)
        a.stop(None)
        b.stop(None)

    kinds: dict[str, list[str]] = {"ok": [], "refused": [], "in_flight": [], "other": []}
    wrong_payload = []
    for message, status, body, _ in results:
        kind = classify(status, body, handler.by_path.get(f"/echo/{message}", []))
        kinds[kind].append(message)
        if kind == "ok" and body != {"echo": message}:
            wrong_payload.append((message, body))
    sent_after = [sum(1 for *_, k in results if k == n + 1) for n in range(len(kills))]
    print(
        f"\n[flask, 2 backends, A killed at responses {kills}] responses={len(results)}"
        f" sent_after_each_kill={sent_after} ok={len(kinds['ok'])}"
        f" refused={len(kinds['refused'])} in_flight={len(kinds['in_flight'])}"
        f" other={len(kinds['other'])} pool_after={status_after}"
    )
    for kind in ("refused", "in_flight", "other"):
        for message in kinds[kind][:5]:
            answer = next((s, bd) for m, s, bd, _ in results if m == message)
            print(f"  {kind}: {message} -> {answer} log={handler.by_path.get('/echo/' + message)}")

    assert killer_errors == []
    assert len(kills) == len(KILLS), "backend A was not killed every time"
    assert len(results) == LOAD_CLIENTS * LOAD_REQUESTS, "the run hit its deadline"
    assert all(sent_after), "a kill did not happen while the load ran"
    assert wrong_payload == []
    assert kinds["refused"] == [], f"{len(kinds['refused'])} requests refused/never reached"
    assert kinds["other"] == []
    assert len(kinds["in_flight"]) <= LOAD_CLIENTS * len(KILLS)
