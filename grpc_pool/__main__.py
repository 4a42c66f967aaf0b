"""``python -m grpc_pool COMMAND``: the command line lives in ``grpc_pool.cli``."""

from __future__ import annotations

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
