"""Scope keys and keyring entries.

A scope key is 32 random bytes for one (patient file, scope, version). A keyring entry is
that key sealed to one member's X25519 key and signed by the granter's Ed25519 key.

Sealed plaintext (53 bytes): ``file_id(16) || scope(1) || version(u32be) || key(32)``;
sealing is libsodium ``crypto_box_seal`` (ephemeral X25519 key, nonce =
``BLAKE2b-192(epk || member_pk)``), so ``sealed_key`` is 32 + 16 + 53 = 101 bytes.

Signature: Ed25519 by the granter over ``canonical("ecrin/keyring-entry/v1", file_id(16),
scope(1), version(u32be), member_id(16), member_fingerprint(32), relationship(ascii),
permissions(ascii, sorted, comma-separated), valid_from(u64be), valid_until(u64be),
granter_id(16), sealed_key)``; times are Unix seconds, 0 meaning unbounded.
"""

from __future__ import annotations

import dataclasses
import enum
import hmac
import struct
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Self

import nacl.hashlib
from nacl.bindings import crypto_box, crypto_box_seal_open, crypto_scalarmult_base
from nacl.signing import VerifyKey

from ecrin_e2ee import _seams
from ecrin_e2ee._secret import SecretKey
from ecrin_e2ee._wire import (
    b64d,
    b64e,
    canonical,
    field,
    from_timestamp,
    parse_uuid,
    timestamp,
    u32,
    u64,
)
from ecrin_e2ee.errors import DecryptionError, FormatError
from ecrin_e2ee.identity import IdentityKeys, PublicIdentity

__all__ = [
    "KeyringEntry",
    "Permission",
    "Relationship",
    "Scope",
    "ScopeKey",
    "open_entry",
    "seal_entry",
]

_ENTRY_LABEL = b"ecrin/keyring-entry/v1"


class Scope(enum.Enum):
    """The three key scopes of a patient file; ``code`` is the byte used in binary formats."""

    CLINICAL = "clinical"
    SHARED = "shared"
    ADMINISTRATIVE = "administrative"

    @property
    def code(self) -> int:
        return _SCOPE_CODES[self]

    @classmethod
    def from_code(cls, code: int) -> Scope:
        for scope, value in _SCOPE_CODES.items():
            if value == code:
                return scope
        raise FormatError("unknown scope code")


_SCOPE_CODES = {Scope.CLINICAL: 1, Scope.SHARED: 2, Scope.ADMINISTRATIVE: 3}


class Permission(enum.Enum):
    READ = "read"
    APPEND = "append"


class Relationship(enum.Enum):
    """Why a member holds a key (mirrors the sharing service's grant relationships)."""

    OWNER = "owner"
    CARE_TEAM = "care_team"
    REPLACEMENT = "replacement"
    SECRETARY = "secretary"
    PATIENT = "patient"
    PARENT = "parent"
    GUARDIAN = "guardian"


class ScopeKey(SecretKey):
    """The key of one (file, scope, version). ``to_bytes`` returns the 32 key bytes only."""

    SIZE: ClassVar[int] = 32
    BOUND_SIZE: ClassVar[int] = 16 + 1 + 4 + 32
    __slots__ = ("file_id", "scope", "version")

    def __init__(self, file_id: uuid.UUID, scope: Scope, version: int, key: bytes) -> None:
        super().__init__(key)
        if not 1 <= version <= 0xFFFFFFFF:
            raise ValueError("version must be a positive u32")
        self.file_id = file_id
        self.scope = scope
        self.version = version

    @classmethod
    def generate(cls, file_id: uuid.UUID, scope: Scope, version: int = 1) -> Self:  # type: ignore[override]
        return cls(file_id, scope, version, _seams.random_bytes(cls.SIZE))

    @classmethod
    def from_bytes(  # type: ignore[override]
        cls, file_id: uuid.UUID, scope: Scope, version: int, key: bytes
    ) -> Self:
        return cls(file_id, scope, version, key)

    def binding(self) -> bytes:
        """``file_id(16) || scope(1) || version(u32be)``: what this key is for."""
        return self.file_id.bytes + bytes([self.scope.code]) + u32(self.version)

    def to_bound_bytes(self) -> bytes:
        """``binding() || key``: the 53 bytes that are sealed or wrapped."""
        return self.binding() + self._key

    @classmethod
    def from_bound_bytes(cls, data: bytes) -> Self:
        if len(data) != cls.BOUND_SIZE:
            raise FormatError("bound scope key has the wrong size")
        file_id = uuid.UUID(bytes=data[:16])
        scope = Scope.from_code(data[16])
        (version,) = struct.unpack(">I", data[17:21])
        return cls(file_id, scope, version, data[21:])

    def __repr__(self) -> str:
        return (
            f"ScopeKey(file_id={self.file_id}, scope={self.scope.value}, "
            f"version={self.version}, <secret>)"
        )

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ScopeKey):
            return NotImplemented
        return hmac.compare_digest(self.to_bound_bytes(), other.to_bound_bytes())

    __hash__ = None  # type: ignore[assignment]


def seal(plaintext: bytes, recipient_public: bytes) -> bytes:
    """``crypto_box_seal`` with the ephemeral key drawn from the seam (same wire format)."""
    esk = _seams.random_bytes(32)
    epk = crypto_scalarmult_base(esk)
    nonce = nacl.hashlib.blake2b(epk + recipient_public, digest_size=24).digest()
    return epk + crypto_box(plaintext, nonce, recipient_public, esk)


def _permissions_bytes(permissions: frozenset[Permission]) -> bytes:
    return ",".join(sorted(p.value for p in permissions)).encode("ascii")


@dataclass(frozen=True, slots=True)
class KeyringEntry:
    """One scope key version sealed to one member, signed by the granter."""

    file_id: uuid.UUID
    scope: Scope
    version: int
    member_id: uuid.UUID
    member_fingerprint: bytes
    relationship: Relationship
    permissions: frozenset[Permission]
    valid_from: datetime | None
    valid_until: datetime | None
    granter_id: uuid.UUID
    sealed_key: bytes
    signature: bytes

    FORMAT_VERSION: ClassVar[int] = 1
    SEALED_SIZE: ClassVar[int] = 32 + 16 + ScopeKey.BOUND_SIZE

    def __post_init__(self) -> None:
        if len(self.member_fingerprint) != 32:
            raise FormatError("member fingerprint must be 32 bytes")
        if len(self.signature) != 64:
            raise FormatError("signature must be 64 bytes")
        if not self.permissions:
            raise FormatError("an entry needs at least one permission")
        if not 1 <= self.version <= 0xFFFFFFFF:
            raise FormatError("version must be a positive u32")

    def signed_bytes(self) -> bytes:
        return canonical(
            _ENTRY_LABEL,
            self.file_id.bytes,
            bytes([self.scope.code]),
            u32(self.version),
            self.member_id.bytes,
            self.member_fingerprint,
            self.relationship.value.encode("ascii"),
            _permissions_bytes(self.permissions),
            u64(timestamp(self.valid_from)),
            u64(timestamp(self.valid_until)),
            self.granter_id.bytes,
            self.sealed_key,
        )

    def is_valid_at(self, when: datetime) -> bool:
        if self.valid_from is not None and when < self.valid_from:
            return False
        return self.valid_until is None or when < self.valid_until

    def to_json(self) -> dict[str, Any]:
        return {
            "format": self.FORMAT_VERSION,
            "file_id": str(self.file_id),
            "scope": self.scope.value,
            "version": self.version,
            "member_id": str(self.member_id),
            "member_fingerprint": b64e(self.member_fingerprint),
            "relationship": self.relationship.value,
            "permissions": sorted(p.value for p in self.permissions),
            "valid_from": timestamp(self.valid_from) or None,
            "valid_until": timestamp(self.valid_until) or None,
            "granter_id": str(self.granter_id),
            "sealed_key": b64e(self.sealed_key),
            "signature": b64e(self.signature),
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Self:
        """Parse (no verification: that happens in :func:`open_entry`)."""
        if field(obj, "format") != cls.FORMAT_VERSION:
            raise FormatError("unsupported keyring entry format")
        try:
            scope = Scope(field(obj, "scope"))
            relationship = Relationship(field(obj, "relationship"))
            permissions = frozenset(Permission(p) for p in field(obj, "permissions"))
        except (ValueError, TypeError):
            raise FormatError("invalid enum value in keyring entry") from None
        version = field(obj, "version")
        if not isinstance(version, int):
            raise FormatError("version must be an integer")

        def _time(name: str) -> datetime | None:
            value = field(obj, name)
            if value is None:
                return None
            if not isinstance(value, int) or value <= 0:
                raise FormatError(f"{name} must be a positive integer or null")
            return from_timestamp(value)

        return cls(
            file_id=parse_uuid(field(obj, "file_id")),
            scope=scope,
            version=version,
            member_id=parse_uuid(field(obj, "member_id")),
            member_fingerprint=b64d(field(obj, "member_fingerprint"), size=32),
            relationship=relationship,
            permissions=permissions,
            valid_from=_time("valid_from"),
            valid_until=_time("valid_until"),
            granter_id=parse_uuid(field(obj, "granter_id")),
            sealed_key=b64d(field(obj, "sealed_key"), what="sealed_key"),
            signature=b64d(field(obj, "signature"), size=64, what="signature"),
        )


def seal_entry(
    scope_key: ScopeKey,
    member: PublicIdentity,
    *,
    relationship: Relationship,
    permissions: frozenset[Permission] | set[Permission],
    granter: IdentityKeys,
    valid_from: datetime | None = None,
    valid_until: datetime | None = None,
) -> KeyringEntry:
    """Seal ``scope_key`` to ``member`` and sign the entry as ``granter``.

    ``member`` must already be verified by the caller against what it pinned (see
    :func:`ecrin_e2ee.grants.grant_scope_keys`, which does that).
    """
    member.verify()
    sealed = seal(scope_key.to_bound_bytes(), member.enc_public)
    unsigned = KeyringEntry(
        file_id=scope_key.file_id,
        scope=scope_key.scope,
        version=scope_key.version,
        member_id=member.account_id,
        member_fingerprint=member.fingerprint(),
        relationship=relationship,
        permissions=frozenset(permissions),
        valid_from=valid_from,
        valid_until=valid_until,
        granter_id=granter.account_id,
        sealed_key=sealed,
        signature=bytes(64),
    )
    return dataclasses.replace(unsigned, signature=granter.sign(unsigned.signed_bytes()))


def open_entry(
    entry: KeyringEntry,
    member_keys: IdentityKeys,
    granter: PublicIdentity,
    *,
    at: datetime | None = None,
) -> ScopeKey:
    """Verify the granter's signature, then unseal and check the key's binding.

    ``granter`` must be an identity the caller verified (pinned fingerprint). The entry must
    name this member and this member's current key, be inside its validity window at ``at``
    (default: now), and the sealed key must be bound to the entry's file, scope and version.
    Every failure raises :class:`DecryptionError`.
    """
    when = at if at is not None else _seams.now()
    own = member_keys.public_identity()
    if (
        entry.granter_id != granter.account_id
        or entry.member_id != member_keys.account_id
        or not hmac.compare_digest(entry.member_fingerprint, own.fingerprint())
        or not entry.is_valid_at(when)
        or len(entry.sealed_key) != KeyringEntry.SEALED_SIZE
    ):
        raise DecryptionError()
    try:
        VerifyKey(granter.sign_public).verify(entry.signed_bytes(), entry.signature)
        plain = crypto_box_seal_open(
            entry.sealed_key, own.enc_public, bytes(member_keys.encryption_key)
        )
        key = ScopeKey.from_bound_bytes(plain)
    except Exception:  # BadSignatureError, CryptoError, FormatError: all opaque
        raise DecryptionError() from None
    if (key.file_id, key.scope, key.version) != (entry.file_id, entry.scope, entry.version):
        raise DecryptionError()
    return key
