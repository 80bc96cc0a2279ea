"""The client's errors: one small hierarchy, each with the CLI exit code it maps to.

An unknown account and a wrong passphrase are deliberately one error,
:class:`InvalidCredentials`: the gateway answers both the same way so that accounts cannot
be enumerated, and the client does not pretend to know better.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from ecrin_e2ee import IdentityMismatchError as _E2EEIdentityMismatch

if TYPE_CHECKING:
    import httpx

__all__ = [
    "AuthError",
    "Conflict",
    "EcrinError",
    "IdentityMismatch",
    "IntegrityError",
    "InvalidCredentials",
    "InvalidInput",
    "NotFound",
    "NotLoggedIn",
    "PermissionDenied",
    "RateLimited",
    "SecondFactorRequired",
    "ServerError",
    "SessionRevoked",
    "Unavailable",
    "error_from_response",
]


class EcrinError(Exception):
    """Base of every client error. ``exit_code`` is what the CLI exits with."""

    exit_code: ClassVar[int] = 1
    default_message: ClassVar[str] = "request failed"

    def __init__(self, message: str | None = None, *, slug: str | None = None,
                 status: int | None = None, fields: dict[str, str] | None = None) -> None:
        super().__init__(message or self.default_message)
        self.slug = slug
        self.status = status
        #: The server's reason for each field it refused (``{"email": "..."}``).
        self.fields = fields or {}

    @property
    def message(self) -> str:
        return str(self.args[0])

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"error": type(self).__name__, "slug": self.slug,
                                "status": self.status, "message": self.message,
                                "exit_code": self.exit_code}
        if self.fields:
            data["fields"] = self.fields
        return data


class InvalidInput(EcrinError):
    """The request or a value typed by the user is malformed (bad recovery key, 400/422)."""

    exit_code = 1
    default_message = "invalid input"


class AuthError(EcrinError):
    exit_code = 2
    default_message = "authentication failed"


class InvalidCredentials(AuthError):
    """Wrong passphrase or recovery key, or unknown account: indistinguishable by design."""

    default_message = "wrong passphrase or unknown account"


class NotLoggedIn(AuthError):
    default_message = "not logged in (run `ecrin login`)"


class SessionRevoked(AuthError):
    """The session ended: revoked, expired, or a refresh token was reused."""

    default_message = "the session has ended; log in again"


class PermissionDenied(AuthError):
    default_message = "permission denied"


class SecondFactorRequired(EcrinError):
    exit_code = 3
    default_message = "second factor required (give a TOTP code or a recovery code)"


class NotFound(EcrinError):
    exit_code = 4
    default_message = "not found"


class Conflict(EcrinError):
    exit_code = 4
    default_message = "conflict"


class RateLimited(EcrinError):
    exit_code = 5
    default_message = "rate limited"

    def __init__(self, message: str | None = None, *, retry_after: float | None = None,
                 slug: str | None = None, status: int | None = 429) -> None:
        if message is None:
            message = "too many attempts" + (
                f"; retry in {retry_after:g} s" if retry_after is not None else "; retry later")
        super().__init__(message, slug=slug, status=status)
        self.retry_after = retry_after

    def to_json(self) -> dict[str, Any]:
        return {**super().to_json(), "retry_after": self.retry_after}


class Unavailable(EcrinError):
    """The server cannot be reached or says it is temporarily unavailable."""

    exit_code = 6
    default_message = "server unavailable"

    def __init__(self, message: str | None = None, *, retry_after: float | None = None,
                 slug: str | None = None, status: int | None = None) -> None:
        super().__init__(message, slug=slug, status=status)
        self.retry_after = retry_after


class ServerError(EcrinError):
    """The server failed (5xx) or answered something that is not the contract."""

    exit_code = 6
    default_message = "server error"


class IntegrityError(EcrinError):
    """What the server sent does not verify: a wrap that does not open, a challenge bound
    to another server, weakened KDF parameters, a directory entry that does not match."""

    exit_code = 7
    default_message = "integrity check failed"


class IdentityMismatch(IntegrityError, _E2EEIdentityMismatch):
    """A pinned account's public identity changed, or an identity does not self-verify."""

    default_message = "identity does not match the pinned fingerprint"


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def problem_of(response: httpx.Response) -> tuple[str | None, str | None]:
    """(slug, detail) of an RFC 9457 problem body; (None, None) if the body is not one."""
    try:
        body = response.json()
    except ValueError:
        return None, None
    if not isinstance(body, dict):
        return None, None
    type_ = body.get("type")
    slug = type_.rstrip("/").rsplit("/", 1)[-1] if isinstance(type_, str) else None
    if slug == "about:blank":
        slug = None
    detail = body.get("detail") or body.get("title")
    return slug, detail if isinstance(detail, str) else None


# Where a field sits in a request, as FastAPI's validation errors name it: not shown.
_LOCATIONS = ("body", "query", "path", "header", "cookie")
# The generic wording of a 422 (ecrin_platform.problems): replaced by the field reasons.
_GENERIC_DETAILS = ("The request does not match the schema.",)


def problem_fields(response: httpx.Response) -> dict[str, str]:
    """``{field: reason}`` from the ``errors`` of a problem body (FastAPI's ``loc`` and
    ``msg``); empty if there are none. The field is the dotted path without its location
    (``body``), e.g. ``email`` or ``kdf.params.opslimit``."""
    try:
        body = response.json()
    except ValueError:
        return {}
    errors = body.get("errors") if isinstance(body, dict) else None
    if not isinstance(errors, list):
        return {}
    fields: dict[str, str] = {}
    for error in errors[:10]:
        if not isinstance(error, dict) or not isinstance(error.get("msg"), str):
            continue
        loc = [str(part) for part in error.get("loc") or () if not isinstance(part, dict)]
        if loc and loc[0] in _LOCATIONS:
            loc = loc[1:]
        name = ".".join(loc) or "request"
        fields.setdefault(name, error["msg"])
    return fields


def _with_fields(detail: str | None, fields: dict[str, str]) -> str | None:
    """The server's reason, naming each field: "email: value is not a valid email..."."""
    if not fields:
        return detail
    reasons = "; ".join(f"{name}: {reason}" for name, reason in fields.items())
    if not detail or detail in _GENERIC_DETAILS:
        return reasons
    return f"{detail} ({reasons})"


_SLUGS: dict[str, type[EcrinError]] = {
    "invalid-credentials": InvalidCredentials,
    "second-factor-required": SecondFactorRequired,
    "refresh-token-reused": SessionRevoked,
    "session-revoked": SessionRevoked,
    "email-taken": Conflict,
    "account-exists": Conflict,
    "idempotency-key-reused": Conflict,
    "not-found": NotFound,
    "rate-limited": RateLimited,
    "too-many-requests": RateLimited,
    # The server found its stored ciphertext incomplete: as much an integrity failure as a
    # chunk that does not authenticate.
    "content-unavailable": IntegrityError,
}

_STATUS: dict[int, type[EcrinError]] = {
    400: InvalidInput, 401: AuthError, 403: PermissionDenied, 404: NotFound, 409: Conflict,
    413: InvalidInput, 422: InvalidInput, 429: RateLimited,
    502: Unavailable, 503: Unavailable, 504: Unavailable,
}


def error_from_response(response: httpx.Response) -> EcrinError:
    """Map an error response to the matching client error, by problem slug then status."""
    status = response.status_code
    slug, detail = problem_of(response)
    fields = problem_fields(response) if status < 500 else {}
    cls = _SLUGS.get(slug or "") or _STATUS.get(status)
    if cls is None:
        cls = ServerError if status >= 500 else InvalidInput
    # The server's detail is shown for validation errors only: for authentication errors
    # the client's own fixed wording is the one clear sentence the user needs.
    message = (_with_fields(detail, fields)
               if cls in (InvalidInput, Conflict, NotFound, PermissionDenied) else None)
    if cls is RateLimited:
        return RateLimited(retry_after=_retry_after(response), slug=slug, status=status)
    if cls is Unavailable:
        return Unavailable(message, retry_after=_retry_after(response), slug=slug, status=status)
    if cls is Conflict and slug and not message:
        message = slug.replace("-", " ")
    return cls(message, slug=slug, status=status, fields=fields)
