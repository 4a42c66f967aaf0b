"""gunicorn settings for examples/gunicorn_app.py: ``gunicorn -c examples/gunicorn_conf.py``.

Works with the sync worker and with gthread (``--worker-class gthread --threads 4``):
a pool is thread-safe, so one per worker process serves all its threads.
"""

from __future__ import annotations

from typing import Any

# Import the app (and create its pool) once, in the master, before forking workers.
preload_app = True
workers = 2
bind = "127.0.0.1:8000"
# SIGTERM: workers stop accepting, finish requests within this, then exit (and
# their atexit handlers close their pools).
graceful_timeout = 10

# How long a new worker waits for its pool's first ready channel before serving.
READY_TIMEOUT = 5.0


def post_fork(server: Any, worker: Any) -> None:
    """In each new worker, right after the fork: build the worker's own connections.

    The pool inherited from the master rebuilds on this first use; waiting here
    for all its channels means the first requests find them ready. A backend that is down must not
    stop the worker from booting (gunicorn would then stop the whole server), so a
    timeout is only logged: requests wait ``CHANNEL_WAIT`` then answer 503.
    """
    import grpc_pool
    from examples.gunicorn_app import pool

    try:
        status = pool.wait_ready(timeout=READY_TIMEOUT, min_ready=pool.status().expected_size)
    except grpc_pool.PoolTimeout as error:
        server.log.warning("worker %s: backend not ready yet: %s", worker.pid, error)
    else:
        server.log.info("worker %s: pool ready, %d channels", worker.pid, status.current_size)
