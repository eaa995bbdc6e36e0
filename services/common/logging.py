"""Structured logs for the services, with secrets redacted before anything
is rendered.

Library code (``signers/``, domain modules) raises and never logs; the gRPC
layer, background jobs and the audit sink log through here. Every event is a
key/value dict; ``json`` output is for production, ``console`` for a
terminal. Standard-library loggers (grpc, SQLAlchemy, alembic) pass through
the same processors, so their messages are redacted too.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any

import structlog

REDACTED = "[redacted]"

# A key is sensitive when one of its underscore-separated words is one of these
# ("pin" matches "user_pin" but not "pinned_fingerprint").
_SENSITIVE_WORDS = frozenset(
    {
        "pin",
        "passphrase",
        "password",
        "passwd",
        "secret",
        "token",
        "authorization",
        "credential",
        "credentials",
    }
)
_SENSITIVE_KEYS = frozenset({"private_key", "key_pem", "pkcs8", "so_pin"})
# The words of a key however it is spelled: user_pin, SO_PIN, requestToken and
# x-request-token (gRPC metadata and protobuf's JSON names reach logs too).
_KEY_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z0-9]+")

_PRIVATE_KEY_PEM = re.compile(
    r"-----BEGIN ([A-Z0-9 ]*)PRIVATE KEY-----.*?(-----END \1PRIVATE KEY-----|\Z)",
    re.DOTALL,
)
# user:password@ in URLs such as redis://:hunter2@host/0. The scheme must
# start where a word starts and every part is bounded, so that the search
# stays linear: an unanchored scheme pattern tries every position of a long
# run of letters, which made one long name in a request stall the process.
_URL_PASSWORD = re.compile(
    r"(?<![a-zA-Z0-9+.-])([a-zA-Z][a-zA-Z0-9+.-]{0,31}://[^:/@\s]{0,256})"
    r":[^@/\s]{0,1024}@"
)
# RFC 7512 pkcs11: URIs may carry pin-value=...
_PIN_VALUE = re.compile(r"(pin-value=)[^;&?\s\"']*", re.IGNORECASE)


def is_sensitive_key(key: str) -> bool:
    """Whether a log field of this name holds a secret."""
    words = [word.lower() for word in _KEY_WORD.findall(key)]
    if "_".join(words) in _SENSITIVE_KEYS:
        return True
    return any(word in _SENSITIVE_WORDS for word in words)


# Longer text in a log field or audit detail is cut to this many characters:
# requests may carry megabytes, and an echo of them helps no reader.
MAX_TEXT_LENGTH = 2048


def redact_text(text: str) -> str:
    """Remove private keys, URL passwords and PKCS#11 PIN values from text,
    cut to ``MAX_TEXT_LENGTH`` characters first."""
    if len(text) > MAX_TEXT_LENGTH:
        cut = len(text) - MAX_TEXT_LENGTH
        text = f"{text[:MAX_TEXT_LENGTH]}[... {cut} more characters cut]"
    text = _PRIVATE_KEY_PEM.sub("[private key redacted]", text)
    text = _URL_PASSWORD.sub(r"\1:" + REDACTED + "@", text)
    return _PIN_VALUE.sub(r"\1" + REDACTED, text)


def redact_value(value: Any) -> Any:
    """Redact secrets inside a log value, recursing through containers."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, bytes):
        return redact_text(value.decode("utf-8", "replace"))
    if isinstance(value, Mapping):
        return {
            key: REDACTED if is_sensitive_key(str(key)) else redact_value(item)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [redact_value(item) for item in value]
    if isinstance(value, BaseException):
        return redact_text(f"{type(value).__name__}: {value}")
    return value


def redact_event(
    _logger: Any, _method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: the redaction step every event goes through."""
    for key in list(event):
        if is_sensitive_key(key):
            event[key] = REDACTED
        else:
            event[key] = redact_value(event[key])
    return event


def configure_logging(output: str = "console", level: str = "info") -> None:
    """Set up structlog and the standard library's logging for a service."""
    if output not in ("console", "json"):
        raise ValueError(f"log output must be 'console' or 'json', not {output!r}")

    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        redact_event,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if output == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # SQLAlchemy's engine logger would print statements with bound parameters.
    logging.getLogger("sqlalchemy.engine").setLevel(logging.WARNING)
    # Alembic narrates every migration check at INFO.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # aiohttp logs every malformed request a client sends to the public
    # listener as an ERROR with a traceback, so anyone could flood the log;
    # what fails inside Tessera's own handlers the listener logs itself.
    logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    """A structured logger for a service module."""
    logger: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(name)
    return logger
