"""The bench server child: ``python -m grpc_pool.cli.bench serve WORKERS MAX_STREAMS``."""

from __future__ import annotations

import sys

from .server import serve

if sys.argv[1:2] != ["serve"] or len(sys.argv) != 4:
    sys.exit("usage: python -m grpc_pool.cli.bench serve WORKERS MAX_STREAMS")
serve(int(sys.argv[2]), int(sys.argv[3]))
