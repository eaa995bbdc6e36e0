"""Tessera's one error model.

Domain code raises these; ``services.common.rpc`` maps them to gRPC status
codes in one place. Each message is a sentence a person can act on. Details a
client needs (for example the existing revocation behind ALREADY_EXISTS)
travel as protobuf messages in ``details``.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence

from google.protobuf.message import Message


class ErrorKind(enum.Enum):
    """What went wrong, from the caller's point of view."""

    INVALID_ARGUMENT = "invalid_argument"
    NOT_FOUND = "not_found"
    ALREADY_EXISTS = "already_exists"
    FAILED_PRECONDITION = "failed_precondition"
    PERMISSION_DENIED = "permission_denied"
    RESOURCE_EXHAUSTED = "resource_exhausted"
    UNAVAILABLE = "unavailable"
    INTERNAL = "internal"


class TesseraError(Exception):
    """An error with a kind, a sentence for a person, and optional details."""

    kind = ErrorKind.INTERNAL

    def __init__(self, message: str, details: Sequence[Message] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.details = tuple(details)


class InvalidArgument(TesseraError):
    """The request is malformed: bad bytes, a missing field, an unknown value."""

    kind = ErrorKind.INVALID_ARGUMENT


class NotFound(TesseraError):
    """The request names something that does not exist."""

    kind = ErrorKind.NOT_FOUND


class AlreadyExists(TesseraError):
    """The request would create or do something that already exists or happened."""

    kind = ErrorKind.ALREADY_EXISTS


class PolicyRefusal(TesseraError):
    """The request is well formed but Tessera's policy does not allow it."""

    kind = ErrorKind.FAILED_PRECONDITION


class PermissionDenied(TesseraError):
    """The caller may not do this."""

    kind = ErrorKind.PERMISSION_DENIED


class ResourceExhausted(TesseraError):
    """The service will not take on more now: too many subscribers, or one too
    slow to keep up; the caller may come back later."""

    kind = ErrorKind.RESOURCE_EXHAUSTED


class Unavailable(TesseraError):
    """A dependency (registry, Redis, database, signer) cannot be reached now."""

    kind = ErrorKind.UNAVAILABLE


class RemoteInternal(TesseraError):
    """Another Tessera service failed unexpectedly while serving this request."""

    kind = ErrorKind.INTERNAL


ERROR_CLASSES: dict[ErrorKind, type[TesseraError]] = {
    cls.kind: cls
    for cls in (
        InvalidArgument,
        NotFound,
        AlreadyExists,
        PolicyRefusal,
        PermissionDenied,
        ResourceExhausted,
        Unavailable,
        RemoteInternal,
    )
}
