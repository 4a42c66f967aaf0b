"""The likely cause behind gRPC core's connection errors, in words a user can act on.

One rule for the pool's errors (``NoChannelAvailable``, ``PoolTimeout``) and the
CLI's ``check`` hint: each caller names its own switch (``insecure=True`` or
``--insecure``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import grpc

from .._base.redact import redact_target
from .._config.targets import ip_literal, no_port

__all__ = ["port_hint", "tls_hint"]

# What grpc core reports when a TLS client meets a plaintext server ...
_TLS_TO_PLAINTEXT = ("Tls handshake failed", "WRONG_VERSION_NUMBER")
# ... and when a plaintext client meets a TLS server (it closes the connection).
_PLAINTEXT_TO_TLS = ("Socket closed", "Connection reset")


def tls_hint(errors: Iterable[str], insecure: bool, *, to_plaintext: str, to_tls: str) -> str:
    """One hint when ``errors`` look like TLS on one side and plaintext on the other
    (``insecure``: whether the client used plaintext), else ""."""
    text = " ".join(errors)
    if not insecure and any(mark in text for mark in _TLS_TO_PLAINTEXT):
        return f"the TLS handshake failed; if the server is plaintext, try {to_plaintext}"
    if insecure and any(mark in text for mark in _PLAINTEXT_TO_TLS):
        return (
            f"the server closed each plaintext connection at once; if it expects TLS, try {to_tls}"
        )
    return ""


# From grpcio 1.63 on (its EventEngine DNS resolver, on Linux and macOS) an IP address
# without a port is dialed at 443 like a name; before, the c-ares resolver read the
# default port "https" with atoi(): port 0, which fails every connect.
_IP_DEFAULT_PORT_FIXED = (1, 63)


def port_hint(target: str | Sequence[str], grpc_version: str = grpc.__version__) -> str:
    """ "no port given: 443 assumed (...)" when ``target`` (or one of a list) names a
    host without a port, which grpcio takes and dials at 443 (an IP address at port
    0 before grpcio 1.63: said so); else ""."""
    missing = no_port(target)
    if not missing:
        return ""
    shown = ", ".join(repr(redact_target(t)) for t in missing)
    numbers = tuple(int(n) for n in re.findall(r"\d+", grpc_version)[:2])
    if numbers < _IP_DEFAULT_PORT_FIXED and any(ip_literal(t) for t in missing):
        return (
            f"no port given: grpcio {grpc_version} dials port 0 for an IP address "
            f"without one (443 from grpcio 1.63 on) (target {shown})"
        )
    return f"no port given: 443 assumed (target {shown})"
