from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class PublicIdentityIn(BaseModel):
    """``PublicIdentity.to_json()`` from ``libs/e2ee``."""

    model_config = ConfigDict(extra="forbid")

    account_id: uuid.UUID
    enc_public: str = Field(max_length=64)
    sign_public: str = Field(max_length=64)
    self_signature: str = Field(max_length=128)


class DirectoryEntryOut(BaseModel):
    account_id: uuid.UUID
    identity: dict[str, Any]
    fingerprint: str
    updated_at: datetime


class WrappedIdentityIn(BaseModel):
    """``WrappedIdentity.to_json()``: opaque to the kms, checked for shape only."""

    model_config = ConfigDict(extra="forbid")

    version: int
    account_id: uuid.UUID
    purpose: str = Field(pattern="^(passphrase|recovery)$")
    nonce: str = Field(max_length=64)
    ciphertext: str = Field(max_length=256)


class PassphraseWrapIn(BaseModel):
    key_id: str = Field(min_length=8, max_length=64, pattern="^[A-Za-z0-9_-]+$")
    wrap: WrappedIdentityIn


class AccountKeysIn(BaseModel):
    """What the gateway stores for a new account, in the sign-up saga."""

    identity: PublicIdentityIn
    passphrase: PassphraseWrapIn
    recovery: WrappedIdentityIn
