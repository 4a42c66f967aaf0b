"""The test suite. gRPC core reads GRPC_VERBOSITY once, when grpc is first imported;
this package runs before any test module or conftest.py imports grpc (pyproject's
addopts keep pytest from autoloading grpc_pool's plugin, which would import it
first) and sets ERROR, so gRPC core's INFO lines ("Got goaway", handshake failures)
stay out of the test output, in this process and in every child process a test
starts (they inherit the environment). A GRPC_VERBOSITY of the user's own wins."""

from __future__ import annotations

import os
import sys

QUIET_GRPC_VERBOSITY = "ERROR"
USER_GRPC_VERBOSITY = os.environ.get("GRPC_VERBOSITY")
GRPC_IMPORTED_FIRST = "grpc" in sys.modules
os.environ.setdefault("GRPC_VERBOSITY", QUIET_GRPC_VERBOSITY)
