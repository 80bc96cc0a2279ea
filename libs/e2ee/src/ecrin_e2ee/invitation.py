"""Invitations for people who have no account yet.

The inviter's device draws a 120-bit code, prints it (and a QR code) for the invitee, and
uploads only an :class:`InvitationPayload`:

* ``lookup_id = BLAKE2b-128(key=code, person="ecrin-inv-lookup")``, base64url: lets the
  server find the invitation when the invitee types the code, without being able to open it
  (the lookup id is a one-way function of the code; the payload key is a different one);
* ``salt`` (16 random bytes) and the Argon2id ``params``;
* ``nonce`` (24) and ``ciphertext = XChaCha20-Poly1305(K, nonce, P, AD)`` with
  ``K = Argon2id(code bytes, salt, params)``, ``AD = canonical("ecrin/invitation/v1",
  lookup_id, file_id(16))``, and ``P`` = a count byte then each scope key's 53 bound bytes.

A brute force on what the server stores costs one Argon2id per guess of a 120-bit code.
Redemption (:func:`redeem_invitation`) is slow (Argon2id); run it off the event loop.

Code text: 24 Crockford-base32 digits in 6 groups of 4, each with a Damm check character:
``XXXXC-XXXXC-XXXXC-XXXXC-XXXXC-XXXXC`` — uppercase, QR alphanumeric mode friendly.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Self

import nacl.pwhash.argon2id as argon2id
from nacl.bindings import (
    crypto_aead_xchacha20poly1305_ietf_decrypt,
    crypto_aead_xchacha20poly1305_ietf_encrypt,
)

from ecrin_e2ee import _seams
from ecrin_e2ee._secret import SecretKey
from ecrin_e2ee._wire import b64d, b64e, canonical, derive_key, field, parse_uuid
from ecrin_e2ee.codes import decode_groups, encode_groups
from ecrin_e2ee.errors import DecryptionError, FormatError
from ecrin_e2ee.kdf import KdfParams
from ecrin_e2ee.keyring import ScopeKey

__all__ = ["InvitationCode", "InvitationPayload", "create_invitation", "redeem_invitation"]

_LOOKUP_CONTEXT = b"ecrin-inv-lookup"
_LABEL = b"ecrin/invitation/v1"


class InvitationCode(SecretKey):
    """A 15-byte (120-bit) one-time code; never sent to a server."""

    SIZE: ClassVar[int] = 15
    TEXT_DIGITS: ClassVar[int] = 24

    def to_text(self) -> str:
        return encode_groups(self._key, self.TEXT_DIGITS)

    @classmethod
    def from_text(cls, text: str) -> Self:
        """Parse a typed or scanned code; raises :class:`InvalidCode` on a typo."""
        return cls(decode_groups(text, cls.TEXT_DIGITS, cls.SIZE))

    def lookup_id(self) -> str:
        """The server-side handle of the invitation (base64url of 16 bytes)."""
        return b64e(derive_key(self._key, _LOOKUP_CONTEXT, size=16))


@dataclass(frozen=True, slots=True)
class InvitationPayload:
    """What the sharing service stores with a pending grant."""

    lookup_id: str
    file_id: uuid.UUID
    salt: bytes
    params: KdfParams
    nonce: bytes
    ciphertext: bytes
    version: int = 1

    VERSION: ClassVar[int] = 1

    def __post_init__(self) -> None:
        if self.version != self.VERSION:
            raise FormatError("unsupported invitation version")
        if len(self.salt) != argon2id.SALTBYTES or len(self.nonce) != 24:
            raise FormatError("invitation salt or nonce has the wrong size")

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "lookup_id": self.lookup_id,
            "file_id": str(self.file_id),
            "salt": b64e(self.salt),
            "kdf": self.params.to_json(),
            "nonce": b64e(self.nonce),
            "ciphertext": b64e(self.ciphertext),
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Self:
        return cls(
            lookup_id=field(obj, "lookup_id"),
            file_id=parse_uuid(field(obj, "file_id")),
            salt=b64d(field(obj, "salt"), what="salt"),
            params=KdfParams.from_json(field(obj, "kdf")),
            nonce=b64d(field(obj, "nonce"), what="nonce"),
            ciphertext=b64d(field(obj, "ciphertext"), what="ciphertext"),
            version=field(obj, "version"),
        )

    def _ad(self) -> bytes:
        return canonical(_LABEL, self.lookup_id.encode("ascii"), self.file_id.bytes)


def _payload_key(code: InvitationCode, salt: bytes, params: KdfParams) -> bytes:
    return argon2id.kdf(
        32, code.to_bytes(), salt, opslimit=params.opslimit, memlimit=params.memlimit
    )


def create_invitation(
    scope_keys: Sequence[ScopeKey],
    *,
    params: KdfParams | None = None,
) -> tuple[InvitationCode, InvitationPayload]:
    """Draw a code and wrap ``scope_keys`` (all of one file) under Argon2id(code).

    Returns the code (hand it over out of band, never upload it) and the payload to upload.
    """
    if not scope_keys or len(scope_keys) > 255:
        raise ValueError("an invitation carries between 1 and 255 scope keys")
    file_id = scope_keys[0].file_id
    if any(k.file_id != file_id for k in scope_keys):
        raise ValueError("all scope keys of an invitation belong to one file")
    params = params or KdfParams.moderate()
    code = InvitationCode.generate()
    salt = _seams.random_bytes(argon2id.SALTBYTES)
    nonce = _seams.random_bytes(24)
    unsealed = InvitationPayload(code.lookup_id(), file_id, salt, params, nonce, b"")
    plain = bytes([len(scope_keys)]) + b"".join(k.to_bound_bytes() for k in scope_keys)
    ciphertext = crypto_aead_xchacha20poly1305_ietf_encrypt(
        plain, unsealed._ad(), nonce, _payload_key(code, salt, params)
    )
    return code, InvitationPayload(code.lookup_id(), file_id, salt, params, nonce, ciphertext)


def redeem_invitation(code: InvitationCode, payload: InvitationPayload) -> list[ScopeKey]:
    """Open the payload with the code; raises :class:`DecryptionError`.

    The invitee then seals the keys to its own new identity with
    :func:`ecrin_e2ee.grants.grant_scope_keys` (granter = itself).
    """
    if payload.lookup_id != code.lookup_id():
        raise DecryptionError()
    try:
        plain = crypto_aead_xchacha20poly1305_ietf_decrypt(
            payload.ciphertext,
            payload._ad(),
            payload.nonce,
            _payload_key(code, payload.salt, payload.params),
        )
        count = plain[0]
        size = ScopeKey.BOUND_SIZE
        if count == 0 or len(plain) != 1 + count * size:
            raise DecryptionError()
        keys = [
            ScopeKey.from_bound_bytes(plain[1 + i * size : 1 + (i + 1) * size])
            for i in range(count)
        ]
    except Exception:
        raise DecryptionError() from None
    if any(k.file_id != payload.file_id for k in keys):
        raise DecryptionError()
    return keys
