"""Never echo a secret: a target's user-info and credential-like values, redacted for display.

One helper for every place the pool prints a target or an error text: reprs,
``stats()``, events, error messages and (through ``LogFilter``) its logs.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable
from urllib.parse import unquote

__all__ = [
    "LogFilter",
    "RedactingNullHandler",
    "redact_target",
    "redact_text",
    "redact_value",
    "remember",
    "secrets_of",
]

MASK = "***"
# User-info: what precedes the last "@" of the target's first segment or of any
# segment after a "/" ("user:pw@host:443", "dns://user:pw@8.8.8.8/host",
# "dns:///user:pw@host"). grpcio echoes it verbatim in resolver errors.
_USERINFO = re.compile(r"(^|/)([^/\s]*)@")
# Targets whose rest is a path or a name: an '@' there is a character, not user-info
# ('unix:/tmp/a@b.sock' hides nothing, and 'a' is no secret to mask in every log line).
_PATH_TARGET = re.compile(r"^(?:unix|unix-abstract|xds|google-c2p):", re.IGNORECASE)


def _user_info_in(target: str) -> bool:
    return "@" in target and not _PATH_TARGET.match(target)


def _hide(match: re.Match[str]) -> str:
    user, colon, _ = match.group(2).partition(":")
    # "user:password" keeps the user; a lone "token@" is all secret (as pip does).
    return f"{match.group(1)}{user}:{MASK}@" if colon and user else f"{match.group(1)}{MASK}@"


def redact_target(target: str) -> str:
    """``target`` with any user-info password (or lone token) replaced by ``***``."""
    return _USERINFO.sub(_hide, target) if _user_info_in(target) else target


def secrets_of(targets: Iterable[str]) -> tuple[str, ...]:
    """The secret parts of targets' user-info (password, or the whole token), longest first.

    Also percent-decoded, as grpcio may print them either way.
    """
    found: set[str] = set()
    for target in targets:
        if not _user_info_in(target):
            continue
        for match in _USERINFO.finditer(target):
            user, colon, password = match.group(2).partition(":")
            secret = password if colon and user else match.group(2)
            if secret:
                found.update((secret, unquote(secret)))
    return tuple(sorted(found, key=len, reverse=True))


def redact_text(text: str, secrets: tuple[str, ...]) -> str:
    """``text`` (an error, a log line) with every one of ``secrets`` replaced by ``***``."""
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def redact_value(value: object) -> str:
    """A credential-like value shown by type and size only: ``<str of 26 chars, redacted>``."""
    if isinstance(value, (str, bytes)):
        unit = "chars" if isinstance(value, str) else "bytes"
        return f"<{type(value).__name__} of {len(value)} {unit}, redacted>"
    return f"<{type(value).__name__}, redacted>"


# Secrets of every target a pool was configured with in this process, for the
# log filter (a record does not say which pool it is about). Replaced, never mutated.
_known: tuple[str, ...] = ()
_known_lock = threading.Lock()


def remember(secrets: tuple[str, ...]) -> None:
    """Add ``secrets`` to those the log filter hides."""
    global _known
    if not secrets or set(secrets) <= set(_known):
        return
    with _known_lock:
        _known = tuple(sorted({*_known, *secrets}, key=len, reverse=True))


class LogFilter(logging.Filter):
    """Rewrites a record's message and traceback with known secrets hidden.

    Free when no pool has a secret. See ``RedactingNullHandler`` for where it runs.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        secrets = _known
        if not secrets:
            return True
        message = record.getMessage()
        redacted = redact_text(message, secrets)
        if redacted != message:
            record.msg, record.args = redacted, ()
        if record.exc_info and not record.exc_text:
            text = logging.Formatter().formatException(record.exc_info)
            if redact_text(text, secrets) != text:  # else the handler's formatter decides
                record.exc_text = redact_text(text, secrets)
        if record.stack_info:
            record.stack_info = redact_text(record.stack_info, secrets)
        return True


class RedactingNullHandler(logging.NullHandler):
    """The package logger's ``NullHandler``, which also runs ``LogFilter``.

    A logger's handlers run before those of its parents, so every ``grpc_pool.*``
    record is rewritten in place before it reaches the application's handlers
    (a plain ``NullHandler.handle`` skips filters).
    """

    def __init__(self) -> None:
        super().__init__()
        self.addFilter(LogFilter())

    def handle(self, record: logging.LogRecord) -> bool:
        self.filter(record)
        return True
