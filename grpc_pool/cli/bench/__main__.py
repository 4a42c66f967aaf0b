"""The bench's child processes: ``python -m grpc_pool.cli.bench serve WORKERS MAX_STREAMS``
(the bench server) or ``python -m grpc_pool.cli.bench backend MODE`` (``backends``)."""

from __future__ import annotations

import sys

from .backends import serve_backend
from .server import serve

if sys.argv[1:2] == ["backend"] and len(sys.argv) == 3:
    serve_backend(sys.argv[2])
elif sys.argv[1:2] == ["serve"] and len(sys.argv) == 4:
    serve(int(sys.argv[2]), int(sys.argv[3]))
else:
    sys.exit("usage: python -m grpc_pool.cli.bench serve WORKERS MAX_STREAMS | backend MODE")
