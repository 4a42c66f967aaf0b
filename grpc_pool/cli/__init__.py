"""The command-line tools: ``python -m grpc_pool demo | check | bench``.

Not part of the library: ``import grpc_pool`` never imports this package; only
``python -m grpc_pool`` (``grpc_pool/__main__.py``) and the ``grpc-pool`` script do.
"""

from __future__ import annotations

from .main import COMMANDS, main

__all__ = ["COMMANDS", "main"]
