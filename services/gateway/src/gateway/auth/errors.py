from __future__ import annotations

from ecrin_platform.problems import Conflict, Forbidden, ServiceError


class InvalidCredentials(ServiceError):
    status, slug, title = 401, "invalid-credentials", "Invalid credentials"


class InvalidToken(ServiceError):
    status, slug, title = 401, "invalid-token", "Invalid or expired token"


class RefreshTokenReused(ServiceError):
    status, slug, title = 401, "refresh-token-reused", "Refresh token reused"


class SecondFactorRequired(ServiceError):
    status, slug, title = 401, "second-factor-required", "Second factor required"


class SecondFactorMissing(Forbidden):
    slug, title = "second-factor-required", "Second factor required"


class WeakKdf(ServiceError):
    status, slug, title = 422, "weak-kdf", "KDF parameters below the server minimum"


class EmailTaken(Conflict):
    slug = "email-taken"


class IdempotencyKeyReused(Conflict):
    slug = "idempotency-key-reused"


class WrapMissing(Conflict):
    slug = "wrap-missing"


class AccountExists(Conflict):
    slug = "account-exists"


class CurrentWrapProtected(Conflict):
    slug = "current-passphrase-wrap"


class KeyChangeRejected(ServiceError):
    status, slug, title = 422, "invalid-key-change", "The kms rejected the key change"


class IdentityConflict(Conflict):
    slug = "identity-conflict"


class StepUpRequired(Forbidden):
    """An access token alone does not change how an account is trusted or unlocked."""

    slug, title = "step-up-required", "A fresh proof of the passphrase is required"
