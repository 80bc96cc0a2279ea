"""The records domain's errors, rendered as RFC 9457 problems by the platform."""

from __future__ import annotations

from ecrin_platform.problems import (
    Conflict,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    PreconditionFailed,
    ServiceError,
)


class RecordNotFound(NotFound):
    """Also what a caller without access gets: existence is not revealed by a 403."""

    def __init__(self) -> None:
        super().__init__("No such record.")


class FileNotFound(NotFound):
    def __init__(self) -> None:
        super().__init__("No such patient file.")


class ReadOnlyScope(Forbidden):
    slug, title = "read-only-scope", "Read-only access"


class WriteNotPermitted(Forbidden):
    """The grant allows appending to the scope, the relationship not this write."""

    slug, title = "write-not-permitted", "Not a write your relationship allows"


class InvalidHeader(ServiceError):
    status, slug, title = 422, "invalid-header", "Record header does not match"


class ContentLengthMismatch(ServiceError):
    status, slug, title = 422, "content-length-mismatch", "Content length does not match"


class ContentDigestMismatch(ServiceError):
    status, slug, title = 422, "content-digest-mismatch", "Content does not match the header"


class InvalidCursor(ServiceError):
    status, slug, title = 400, "invalid-cursor", "Invalid cursor"


class IdempotencyKeyRequired(ServiceError):
    status, slug, title = 400, "idempotency-key-required", "Idempotency-Key header required"


class IdempotencyKeyReused(Conflict):
    slug, title = "idempotency-key-reused", "Idempotency key used for another request"


class RecordIdTaken(Conflict):
    slug, title = "record-exists", "Record id already in use"


class VersionCommitted(Conflict):
    slug, title = "version-committed", "Version already committed"


class VersionConflict(Conflict):
    slug, title = "version-conflict", "Version conflict"


class StaleKeyVersion(Conflict):
    slug, title = "stale-key-version", "Key version older than the stored one"


class KeyVersionNotCurrent(Conflict):
    slug, title = "key-version-not-current", "Not the scope's current key version"


class RotationPending(Conflict):
    """A member left the scope and its key is not rotated yet: whoever may rotate finishes
    the rotation (``GET /v1/rotations``) before writing new content (docs/records.md)."""

    slug, title = "rotation-pending", "The scope's key must be rotated first"


class WrapNotKept(NotFound):
    slug, title = "wrap-not-kept", "No earlier wrap of this key version"


class PreconditionRequired(ServiceError):
    status, slug, title = 428, "precondition-required", "If-Match header required"


class StaleVersion(PreconditionFailed):
    slug, title = "stale-version", "The record has changed"


class ContentTooLarge(PayloadTooLarge):
    pass


class UnsupportedContentType(ServiceError):
    status, slug, title = 415, "unsupported-media-type", "Unsupported media type"
