"""The bench's child processes: ``python -m grpc_pool.cli.bench serve WORKERS MAX_STREAMS``
(the bench server), ``... idle KIND TARGET WINDOW FORKS`` (rows 5g-5j, idle.py) and
``... backend MODE`` (misbehaving backends, backends.py)."""

from __future__ import annotations

import sys

if sys.argv[1:2] == ["serve"] and len(sys.argv) == 4:
    from .server import serve

    serve(int(sys.argv[2]), int(sys.argv[3]))
elif sys.argv[1:2] == ["idle"] and len(sys.argv) == 6:
    from .idle import serve_idle

    serve_idle(sys.argv[2], sys.argv[3], float(sys.argv[4]), int(sys.argv[5]))
elif sys.argv[1:2] == ["backend"] and len(sys.argv) == 3:
    from .backends import serve_backend

    serve_backend(sys.argv[2])
else:
    sys.exit(
        "usage: python -m grpc_pool.cli.bench serve WORKERS MAX_STREAMS\n"
        "       python -m grpc_pool.cli.bench idle none|raw|pool TARGET WINDOW FORKS\n"
        "       python -m grpc_pool.cli.bench backend MODE"
    )
