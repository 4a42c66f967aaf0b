"""What the command line needs before grpcio loads: a quiet gRPC core, its own name.

gRPC core reads ``GRPC_VERBOSITY`` once, when ``grpc`` is first imported, and
``python -m grpc_pool`` (or the ``grpc-pool`` script) imports this package, and
with it grpc, before ``__main__`` runs. So ``grpc_pool/__init__.py`` imports this
module first; it sets a quiet default only when the process *is* the command line,
never for an application that imports grpc_pool, and never over the user's own
``GRPC_VERBOSITY``. "ERROR" hides gRPC core's INFO lines (handshake failures,
GOAWAY) that the command reports itself, and keeps its real errors.
"""

from __future__ import annotations

import os
import sys

__all__ = ["QUIET_GRPC_VERBOSITY", "is_command_line", "program_name"]

QUIET_GRPC_VERBOSITY = "ERROR"
_SCRIPT = "grpc-pool"


def is_command_line() -> bool:
    """True in ``python -m grpc_pool ...`` and in the ``grpc-pool`` script."""
    argv = getattr(sys, "orig_argv", [])
    for i, arg in enumerate(argv[:-1]):
        if arg == "-m":
            return argv[i + 1] in ("grpc_pool", "grpc_pool.__main__")
    script = os.path.basename(sys.argv[0]) if sys.argv else ""
    return script in (_SCRIPT, f"{_SCRIPT}.exe")


def program_name() -> str:
    """How the user called the command line, for usage and error lines."""
    script = os.path.basename(sys.argv[0]) if sys.argv else ""
    return script.removesuffix(".exe") if script.startswith(_SCRIPT) else "python -m grpc_pool"


if "grpc" not in sys.modules and is_command_line():
    os.environ.setdefault("GRPC_VERBOSITY", QUIET_GRPC_VERBOSITY)
