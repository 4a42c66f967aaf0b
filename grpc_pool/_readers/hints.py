"""The likely cause behind gRPC core's connection errors, in words a user can act on.

One rule for the pool's errors (``NoChannelAvailable``, ``PoolTimeout``) and the
CLI's ``check`` hint: each caller names its own switch (``insecure=True`` or
``--insecure``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from .._base.redact import redact_target
from .._config.targets import no_port

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


def port_hint(target: str | Sequence[str]) -> str:
    """ "no port given: 443 assumed (...)" when ``target`` (or one of a list) names a
    host without a port, which grpcio takes and dials at 443; else ""."""
    missing = no_port(target)
    if not missing:
        return ""
    shown = ", ".join(repr(redact_target(t)) for t in missing)
    return f"no port given: 443 assumed (target {shown})"
