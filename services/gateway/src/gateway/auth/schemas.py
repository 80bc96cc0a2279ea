from __future__ import annotations

import base64
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, EmailStr, Field

Role = Literal["practitioner", "staff", "patient", "representative"]
#: What a challenge is for; a step-up signs one for the very action it authorises.
Action = Literal["login", "recover", "passphrase", "identity", "sessions"]


def _decoded_size(value: str) -> int:
    try:
        return len(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))
    except ValueError:
        raise ValueError("not base64url") from None


def _exactly(size: int):  # type: ignore[no-untyped-def]
    def check(value: str) -> str:
        if _decoded_size(value) != size:
            raise ValueError(f"must decode to {size} bytes")
        return value

    return check


_B64 = Field(max_length=128, pattern="^[A-Za-z0-9_-]*$")
Key32 = Annotated[str, _B64, AfterValidator(_exactly(32))]
Salt = Annotated[str, _B64, AfterValidator(_exactly(16))]
Signature = Annotated[str, _B64, AfterValidator(_exactly(64))]


def b64decode(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class KdfParamsIn(Strict):
    alg: Literal["argon2id13"]
    opslimit: int = Field(ge=1, le=2**32 - 1)
    memlimit: int = Field(ge=8192, le=2**42)


class KdfIn(Strict):
    salt: Salt
    params: KdfParamsIn


class WrapsIn(Strict):
    passphrase: dict[str, Any]
    recovery: dict[str, Any]


class SignupIn(Strict):
    account_id: uuid.UUID
    email: EmailStr
    role: Role
    login_public_key: Key32
    kdf: KdfIn
    recovery_public_key: Key32
    identity: dict[str, Any]
    wrapped_keys: WrapsIn


class AccountOut(BaseModel):
    id: uuid.UUID
    email: str
    role: str
    second_factor_enabled: bool


class SignupOut(BaseModel):
    """The one answer to every well-formed sign-up: the request's own fields, whether or
    not the email was free (docs/accounts.md)."""

    account_id: uuid.UUID
    email: str
    role: str
    status: Literal["accepted"] = "accepted"


class ChallengeIn(Strict):
    email: EmailStr
    action: Action = "login"


class KdfOut(BaseModel):
    salt: str
    params: dict[str, Any]


class ChallengeOut(BaseModel):
    challenge_id: uuid.UUID
    challenge: str
    expires_at: datetime
    kdf: KdfOut


class LoginIn(Strict):
    challenge_id: uuid.UUID
    signature: Signature
    totp_code: str | None = Field(default=None, max_length=10)
    recovery_code: str | None = Field(default=None, max_length=32)
    device_name: str | None = Field(default=None, max_length=120)


class PassphraseLoginIn(LoginIn):
    unlock: bool = Field(default=False, description=(
        "Also return the keys this device unlocks next (`unlock` in the answer): one "
        "request fewer per login."))


class TokenPair(BaseModel):
    access_token: str
    refresh_token: str
    token_type: Literal["Bearer"] = "Bearer"  # noqa: S105 (a scheme name, not a secret)
    expires_in: int
    session_id: uuid.UUID
    second_factor_verified: bool
    account: AccountOut


class LoginOut(TokenPair):
    unlock: dict[str, Any] | None = Field(default=None, description=(
        "With `unlock: true`: the kms's answer to `GET /v1/keys/me/unlock/{key_id}` for the "
        "KDF salt of the challenge (the identity keys wrapped under the passphrase's KEK, "
        "and one's own directory entry), fetched for the new session. Null when not asked "
        "for or when the kms did not give it: that GET then says why. The device checks it "
        "exactly as that GET's answer."))


class RefreshIn(Strict):
    refresh_token: str = Field(min_length=16, max_length=128)


class MeOut(BaseModel):
    account: AccountOut
    session_id: uuid.UUID
    session_kind: str
    second_factor_verified: bool


class SessionOut(BaseModel):
    id: uuid.UUID
    device_name: str | None
    kind: str
    created_at: datetime
    last_used_at: datetime
    current: bool


class TotpEnrolmentOut(BaseModel):
    secret: str
    otpauth_uri: str
    qr_svg: str


class TotpConfirmIn(Strict):
    code: str = Field(min_length=6, max_length=10)


class RecoveryCodesOut(BaseModel):
    recovery_codes: list[str]


class PassphraseChangeIn(Strict):
    #: A ``passphrase`` challenge signed by the current login key, and the second factor
    #: when enrolled (a normal session); a recovery session gives neither.
    challenge_id: uuid.UUID | None = None
    signature: Signature | None = None
    new_login_public_key: Key32
    new_kdf: KdfIn
    totp_code: str | None = Field(default=None, max_length=10)
    recovery_code: str | None = Field(default=None, max_length=32)


class StepUpIn(Strict):
    """A fresh proof for one sensitive action: a challenge asked for that action, signed
    by the current login key, and the second factor when the account has one."""

    challenge_id: uuid.UUID
    signature: Signature
    totp_code: str | None = Field(default=None, max_length=10)
    recovery_code: str | None = Field(default=None, max_length=32)


class IdentityChangeIn(Strict):
    """A new identity for one's own account, authorised by a fresh ``identity`` challenge
    signed with the current login key (and the second factor when enrolled)."""

    challenge_id: uuid.UUID
    signature: Signature
    totp_code: str | None = Field(default=None, max_length=10)
    recovery_code: str | None = Field(default=None, max_length=32)
    #: ``PublicIdentity.to_json()`` of the new identity
    identity: dict[str, Any]
    #: ``KeyChange.to_json()``, signed by the identity the directory publishes now
    key_change: dict[str, Any]
    #: the new identity keys wrapped under the current KEK and under the recovery key
    wrapped_keys: WrapsIn


class KeyChangeOut(BaseModel):
    previous_identity: dict[str, Any]
    statement: dict[str, Any]


class DirectoryEntryOut(BaseModel):
    account_id: uuid.UUID
    identity: dict[str, Any]
    fingerprint: str
    updated_at: datetime
    key_changes: list[KeyChangeOut] = []
