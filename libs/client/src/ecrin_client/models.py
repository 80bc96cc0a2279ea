"""What the API returns, as parsed by the client (docs/accounts.md)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Model(BaseModel):
    # defer_build: a model's validator is built on its first use, not at import; a
    # command uses a few of these, and building all of them is start-up time (docs/cli.md).
    model_config = ConfigDict(extra="ignore", frozen=True, defer_build=True)


class Account(_Model):
    id: str
    email: str
    role: str
    second_factor_enabled: bool = False


class SignupResult(_Model):
    account_id: str
    email: str
    role: str
    created_at: datetime | None = None


class KdfInfo(_Model):
    salt: str
    params: dict[str, Any]


class Challenge(_Model):
    challenge_id: str
    challenge: str
    expires_at: datetime | None = None
    kdf: KdfInfo


class TokenPair(_Model):
    access_token: str
    refresh_token: str
    token_type: str = "Bearer"  # noqa: S105 (a scheme name, not a secret)
    expires_in: int = 900
    session_id: str
    second_factor_verified: bool = False
    account: Account


class Me(_Model):
    account: Account
    session_id: str
    second_factor_verified: bool = False


class SessionInfo(_Model):
    id: str
    device_name: str | None = None
    created_at: datetime | None = None
    last_used_at: datetime | None = None
    current: bool = False


class TotpEnrolment(_Model):
    secret: str
    otpauth_uri: str
    qr_svg: str | None = None


class RecoveryCodes(_Model):
    recovery_codes: list[str] = Field(min_length=1)


class KeyChangeEntry(_Model):
    """One replacement of an account's identity, as the directory serves it."""

    previous_identity: dict[str, Any]
    statement: dict[str, Any]


class DirectoryEntry(_Model):
    identity: dict[str, Any]
    fingerprint: str
    updated_at: datetime | None = None
    #: the account's identity changes, oldest first (checked by the client, never trusted)
    key_changes: list[KeyChangeEntry] = Field(default_factory=list, max_length=1000)


class UnlockBundle(_Model):
    """``GET /v1/keys/me/unlock/{salt}``: the passphrase wrap and one's own directory entry."""

    wrap: dict[str, Any]
    directory: DirectoryEntry


class LoggedIn(TokenPair):
    """``POST /v1/auth/login``'s answer; ``unlock`` (an :class:`UnlockBundle`, checked
    where it is used) when asked for and given."""

    unlock: dict[str, Any] | None = None


class LoginResult(_Model):
    """A signed-in device: the session, and the fingerprint of the identity it unwrapped."""

    account: Account
    session_id: str
    second_factor_verified: bool
    fingerprint: str


class Verification(_Model):
    """What `ecrin verify` shows: compare ``safety_number`` in person, then pin."""

    account_id: str
    fingerprint: str
    safety_number: str
    pinned: bool
    #: when re-verifying a changed key: the pinned fingerprint it would replace
    replaces: str | None = None
    #: whether a statement signed by the replaced key leads to this one
    key_change_signed: bool | None = None
