"""Wrapping identity private keys under the KEK or the recovery key, and account setup.

A :class:`WrappedIdentity` is XChaCha20-Poly1305 of the 64-byte identity keys with::

    key   = KEK                      (purpose "passphrase")
          | BLAKE2b(key=recovery_key, person="ecrin-rk-wrap") (purpose "recovery")
    nonce = 24 random bytes
    AD    = canonical("ecrin/identity-wrap/v1", account_id(16), purpose(ascii))
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Self

from nacl.bindings import (
    crypto_aead_xchacha20poly1305_ietf_decrypt,
    crypto_aead_xchacha20poly1305_ietf_encrypt,
)

from ecrin_e2ee import _seams
from ecrin_e2ee._wire import b64d, b64e, canonical, derive_key, field, parse_uuid
from ecrin_e2ee.errors import DecryptionError, FormatError
from ecrin_e2ee.identity import IdentityKeys, PublicIdentity
from ecrin_e2ee.kdf import KdfParams, KeyEncryptionKey, derive_account_keys, new_salt
from ecrin_e2ee.recovery import RecoveryKey

__all__ = ["AccountSetup", "WrappedIdentity", "create_account", "unwrap_identity", "wrap_identity"]

Purpose = Literal["passphrase", "recovery"]
_LABEL = b"ecrin/identity-wrap/v1"
_RK_CONTEXT = b"ecrin-rk-wrap"


def _wrapping(key: KeyEncryptionKey | RecoveryKey) -> tuple[Purpose, bytes]:
    if isinstance(key, KeyEncryptionKey):
        return "passphrase", key.to_bytes()
    if isinstance(key, RecoveryKey):
        return "recovery", derive_key(key.to_bytes(), _RK_CONTEXT)
    raise TypeError("wrapping key must be a KeyEncryptionKey or a RecoveryKey")


def _ad(account_id: uuid.UUID, purpose: str) -> bytes:
    return canonical(_LABEL, account_id.bytes, purpose.encode("ascii"))


@dataclass(frozen=True, slots=True)
class WrappedIdentity:
    """Identity private keys encrypted for storage in the kms."""

    account_id: uuid.UUID
    purpose: Purpose
    nonce: bytes
    ciphertext: bytes
    version: int = 1

    VERSION: ClassVar[int] = 1
    NONCE_SIZE: ClassVar[int] = 24
    CIPHERTEXT_SIZE: ClassVar[int] = IdentityKeys.SIZE + 16

    def __post_init__(self) -> None:
        if self.purpose not in ("passphrase", "recovery"):
            raise FormatError("unknown wrap purpose")
        if self.version != self.VERSION:
            raise FormatError("unsupported wrap version")
        if len(self.nonce) != self.NONCE_SIZE or len(self.ciphertext) != self.CIPHERTEXT_SIZE:
            raise FormatError("wrapped identity has the wrong size")

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "account_id": str(self.account_id),
            "purpose": self.purpose,
            "nonce": b64e(self.nonce),
            "ciphertext": b64e(self.ciphertext),
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Self:
        return cls(
            account_id=parse_uuid(field(obj, "account_id")),
            purpose=field(obj, "purpose"),
            nonce=b64d(field(obj, "nonce"), what="nonce"),
            ciphertext=b64d(field(obj, "ciphertext"), what="ciphertext"),
            version=field(obj, "version"),
        )


def wrap_identity(
    keys: IdentityKeys, wrapping_key: KeyEncryptionKey | RecoveryKey
) -> WrappedIdentity:
    """Encrypt the identity private keys under the KEK or the recovery key."""
    purpose, key = _wrapping(wrapping_key)
    nonce = _seams.random_bytes(WrappedIdentity.NONCE_SIZE)
    ct = crypto_aead_xchacha20poly1305_ietf_encrypt(
        keys.to_bytes(), _ad(keys.account_id, purpose), nonce, key
    )
    return WrappedIdentity(keys.account_id, purpose, nonce, ct)


def unwrap_identity(
    wrapped: WrappedIdentity, wrapping_key: KeyEncryptionKey | RecoveryKey
) -> IdentityKeys:
    """Decrypt; raises :class:`DecryptionError` on a wrong key or any tampering."""
    purpose, key = _wrapping(wrapping_key)
    if purpose != wrapped.purpose:
        raise DecryptionError()
    try:
        plain = crypto_aead_xchacha20poly1305_ietf_decrypt(
            wrapped.ciphertext, _ad(wrapped.account_id, purpose), wrapped.nonce, key
        )
    except Exception:
        raise DecryptionError() from None
    return IdentityKeys.from_bytes(wrapped.account_id, plain)


@dataclass(frozen=True, slots=True, repr=False)
class AccountSetup:
    """Everything a new account produces on the device.

    Upload: ``salt``, ``params``, ``login_public_key`` (gateway); ``public_identity``,
    ``wrapped_by_passphrase``, ``wrapped_by_recovery`` (kms). Show ``recovery_key`` once.
    Keep ``identity_keys`` in memory only.
    """

    account_id: uuid.UUID
    salt: bytes
    params: KdfParams
    login_public_key: bytes
    identity_keys: IdentityKeys
    public_identity: PublicIdentity
    wrapped_by_passphrase: WrappedIdentity
    wrapped_by_recovery: WrappedIdentity
    recovery_key: RecoveryKey

    def __repr__(self) -> str:
        return f"AccountSetup(account_id={self.account_id}, <secret>)"

    __str__ = __repr__


def create_account(
    account_id: uuid.UUID, passphrase: str | bytes, params: KdfParams | None = None
) -> AccountSetup:
    """Create salt, keys and wraps for a new account (slow: runs Argon2id once)."""
    params = params or KdfParams.moderate()
    salt = new_salt()
    account_keys = derive_account_keys(passphrase, salt, params)
    identity_keys = IdentityKeys.generate(account_id)
    recovery_key = RecoveryKey.generate()
    return AccountSetup(
        account_id=account_id,
        salt=salt,
        params=params,
        login_public_key=account_keys.login_public_key,
        identity_keys=identity_keys,
        public_identity=identity_keys.public_identity(),
        wrapped_by_passphrase=wrap_identity(identity_keys, account_keys.kek),
        wrapped_by_recovery=wrap_identity(identity_keys, recovery_key),
        recovery_key=recovery_key,
    )
