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


class KeyChangeOut(BaseModel):
    """One replacement of the identity: the identity replaced, and ``KeyChange.to_json()``
    signed by its key."""

    previous_identity: dict[str, Any]
    statement: dict[str, Any]


class DirectoryEntryOut(BaseModel):
    account_id: uuid.UUID
    identity: dict[str, Any]
    fingerprint: str
    updated_at: datetime
    #: Every replacement of this account's identity, oldest first (empty if never changed).
    key_changes: list[KeyChangeOut] = []


class UnlockOut(BaseModel):
    """What a device needs to unlock after logging in, in one answer: its identity keys
    wrapped under the passphrase's KEK, and its own directory entry. The device still
    checks the entry against the keys the wrap opens (a swapped entry is refused)."""

    wrap: dict[str, Any]
    directory: DirectoryEntryOut


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


class KeyChangeIn(BaseModel):
    """``KeyChange.to_json()``: checked against the published identity and the new one."""

    model_config = ConfigDict(extra="forbid")

    format: int
    account_id: uuid.UUID
    old_fingerprint: str = Field(max_length=64)
    new_fingerprint: str = Field(max_length=64)
    changed_at: int
    signature: str = Field(max_length=128)


class IdentityChangeIn(BaseModel):
    """What the gateway forwards after a fresh passphrase proof: the new identity, the
    statement signed by the old key, and the account's wraps of the new identity keys (the
    passphrase wrap for the current KDF salt, which the gateway names, and the recovery
    wrap)."""

    model_config = ConfigDict(extra="forbid")

    identity: PublicIdentityIn
    key_change: KeyChangeIn
    passphrase: PassphraseWrapIn
    recovery: WrappedIdentityIn
