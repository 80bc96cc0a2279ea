from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Relationship = Literal["patient", "parent", "guardian", "care_team", "replacement", "secretary"]
ScopeName = Literal["clinical", "shared", "administrative"]
Access = Literal["read", "append"]


class GrantCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    grant_id: uuid.UUID
    file_id: uuid.UUID
    grantee_id: uuid.UUID
    relationship: Relationship
    scopes: dict[ScopeName, Access] = Field(min_length=1)
    valid_from: datetime | None = None
    valid_until: datetime | None = None


class GrantOut(BaseModel):
    id: uuid.UUID
    file_id: uuid.UUID
    grantee_id: uuid.UUID
    granter_id: uuid.UUID
    relationship: str
    scopes: dict[str, str]
    kind: str
    status: str
    valid_from: datetime | None
    valid_until: datetime | None
    created_at: datetime
    revoked_at: datetime | None


class MemberOut(BaseModel):
    account_id: uuid.UUID
    relationship: str
    scopes: dict[str, str]
    valid_from: datetime | None
    valid_until: datetime | None


class RotationOut(BaseModel):
    id: uuid.UUID
    file_id: uuid.UUID
    scope: str
    reason: str
    created_at: datetime
    #: the new keys are stored at this version; the rotation waits for the re-keying
    rotated_version: int | None = None


B64 = "^[A-Za-z0-9_-]+$"


class InvitationVerifierIn(BaseModel):
    """``InvitationVerifier.to_json()``: a 24-byte nonce and a 48-byte AEAD ciphertext."""

    model_config = ConfigDict(extra="forbid")

    version: Literal[1]
    nonce: str = Field(min_length=32, max_length=32, pattern=B64)
    ciphertext: str = Field(min_length=64, max_length=64, pattern=B64)


class InvitationCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    invitation_id: uuid.UUID
    file_id: uuid.UUID
    lookup_id: str = Field(min_length=16, max_length=64, pattern="^[A-Za-z0-9_-]+$")
    relationship: Relationship
    scopes: dict[ScopeName, Access] = Field(min_length=1)
    valid_until: datetime | None = None
    expires_in_days: int = Field(default=14, ge=1, le=30)
    #: InvitationPayload.to_json(): scope keys wrapped under Argon2id(code)
    payload: dict[str, Any]
    #: InvitationVerifier.to_json(): opened only by the inviter's own devices
    verifier: InvitationVerifierIn


class InvitationRedeem(BaseModel):
    """Proof that the caller holds the out-of-band code: the lookup id derives from it. The
    invitation id alone is no capability (the inviter's lists and the file's audit chain
    show it)."""

    model_config = ConfigDict(extra="forbid")

    lookup_id: str = Field(min_length=16, max_length=64, pattern="^[A-Za-z0-9_-]+$")
    #: b64 of the 32-byte MAC, keyed by the code, over the redeemer's identity: the
    #: inviter's devices check it (the server cannot, nor forge one).
    proof: str = Field(min_length=43, max_length=43, pattern="^[A-Za-z0-9_-]+$")


class InvitationOut(BaseModel):
    id: uuid.UUID
    file_id: uuid.UUID
    inviter_id: uuid.UUID
    relationship: str
    scopes: dict[str, str]
    valid_until: datetime | None
    created_at: datetime
    expires_at: datetime
    status: str
    redeemed_by: uuid.UUID | None
    redeemed_at: datetime | None
    grant_id: uuid.UUID | None
    #: For the inviter's devices, to check who redeemed: the lookup id, the verifier and
    #: the redeemer's proof (none of them opens anything without the inviter's keys).
    lookup_id: str
    verifier: dict[str, Any] | None
    redemption_proof: str | None


class InvitationLookupOut(BaseModel):
    id: uuid.UUID
    file_id: uuid.UUID
    inviter_id: uuid.UUID
    relationship: str
    scopes: dict[str, str]
    valid_until: datetime | None
    expires_at: datetime
    payload: dict[str, Any]


class RotationDone(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int = Field(ge=2, le=0xFFFFFFFF)


class RotationDoneOut(BaseModel):
    #: pending rotations of the scope this completed
    done: int
