"""Invitations for people who have no account yet, binding both people to each other.

The inviter's device draws a 120-bit code, prints it (and a QR code) for the invitee, and
uploads an :class:`InvitationPayload` and an :class:`InvitationVerifier`:

* ``lookup_id = BLAKE2b-128(key=code, person="ecrin-inv-lookup")``, base64url: lets the
  server find the invitation when the invitee types the code, without being able to open it;
* ``K = Argon2id(code bytes, salt, params)``; the payload is ``XChaCha20-Poly1305(K, nonce,
  P, AD)`` with ``AD = canonical("ecrin/invitation/v2", lookup_id, file_id(16))`` and ``P`` =
  a count byte, each scope key's 53 bound bytes, then the inviter's account id (16) and
  identity fingerprint (32): the invitee learns from the code itself whose key to trust;
* ``proof_key = KDF(K, "ecrin-inv-proof")``: the invitee proves with it that the identity
  redeeming the code is the one that holds it (:func:`redemption_proof`, a BLAKE2b MAC of
  the file, the redeemer's account id and fingerprint);
* the verifier is ``proof_key`` wrapped for the inviter's own account (AEAD under
  ``KDF(inviter Ed25519 seed, "ecrin-self-wrap")``), so that any of the inviter's devices,
  and nobody else, can check a redemption proof (:func:`check_redemption`).

A server that does not know the code can neither substitute the inviter (the fingerprint is
inside the payload) nor the invitee (it cannot make a proof), and a brute force on what it
stores costs one Argon2id per guess of a 120-bit code. Creating and redeeming are slow
(Argon2id): run them off the event loop.

Code text: 24 Crockford-base32 digits in 6 groups of 4, each with a Damm check character:
``XXXXC-XXXXC-XXXXC-XXXXC-XXXXC-XXXXC`` — uppercase, QR alphanumeric mode friendly.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple, Self

import nacl.hashlib
import nacl.pwhash.argon2id as argon2id
from nacl.bindings import (
    crypto_aead_xchacha20poly1305_ietf_decrypt,
    crypto_aead_xchacha20poly1305_ietf_encrypt,
)
from nacl.bindings.utils import sodium_memcmp

from ecrin_e2ee import _seams
from ecrin_e2ee._secret import SecretKey
from ecrin_e2ee._wire import b64d, b64e, canonical, derive_key, field, parse_uuid
from ecrin_e2ee.codes import decode_groups, encode_groups
from ecrin_e2ee.errors import DecryptionError, FormatError
from ecrin_e2ee.identity import IdentityKeys, PublicIdentity
from ecrin_e2ee.kdf import KdfParams
from ecrin_e2ee.keyring import ScopeKey

__all__ = [
    "CreatedInvitation",
    "InvitationCode",
    "InvitationPayload",
    "InvitationVerifier",
    "RedeemedInvitation",
    "check_redemption",
    "create_invitation",
    "redeem_invitation",
    "redemption_proof",
]

_LOOKUP_CONTEXT = b"ecrin-inv-lookup"
_PROOF_CONTEXT = b"ecrin-inv-proof"
_REDEEM_CONTEXT = b"ecrin-inv-redeem"
_SELF_WRAP_CONTEXT = b"ecrin-self-wrap"
_LABEL = b"ecrin/invitation/v2"
_REDEEM_LABEL = b"ecrin/invitation-redeem/v1"
_VERIFIER_LABEL = b"ecrin/inv-verifier/v1"
PROOF_SIZE = 32
_FINGERPRINT_SIZE = PublicIdentity.FINGERPRINT_SIZE


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
    """What the sharing service stores with a pending grant (opened with the code)."""

    lookup_id: str
    file_id: uuid.UUID
    salt: bytes
    params: KdfParams
    nonce: bytes
    ciphertext: bytes
    version: int = 2

    VERSION: ClassVar[int] = 2

    def __post_init__(self) -> None:
        if self.version != self.VERSION:
            raise FormatError("unsupported invitation version (made by an older client)")
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


@dataclass(frozen=True, slots=True)
class InvitationVerifier:
    """The invitation's proof key, wrapped for the inviter's own account (stored with the
    invitation; only the inviter's identity keys open it)."""

    nonce: bytes
    ciphertext: bytes
    version: int = 1

    VERSION: ClassVar[int] = 1

    def __post_init__(self) -> None:
        if self.version != self.VERSION:
            raise FormatError("unsupported invitation verifier version")
        if len(self.nonce) != 24 or len(self.ciphertext) != PROOF_SIZE + 16:
            raise FormatError("invitation verifier has the wrong size")

    def to_json(self) -> dict[str, Any]:
        return {"version": self.version, "nonce": b64e(self.nonce),
                "ciphertext": b64e(self.ciphertext)}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Self:
        return cls(nonce=b64d(field(obj, "nonce"), what="nonce"),
                   ciphertext=b64d(field(obj, "ciphertext"), what="ciphertext"),
                   version=field(obj, "version"))


class CreatedInvitation(NamedTuple):
    """The code to hand over (never uploaded), and the two objects to upload."""

    code: InvitationCode
    payload: InvitationPayload
    verifier: InvitationVerifier


@dataclass(frozen=True, slots=True, repr=False)
class RedeemedInvitation:
    """What the code opened: the keys, who made the invitation, and the proof to send."""

    scope_keys: list[ScopeKey]
    inviter_id: uuid.UUID
    inviter_fingerprint: bytes
    proof: bytes

    def __repr__(self) -> str:
        return f"RedeemedInvitation(keys={len(self.scope_keys)}, inviter={self.inviter_id})"


def _payload_key(code: InvitationCode, salt: bytes, params: KdfParams) -> bytes:
    return argon2id.kdf(
        32, code.to_bytes(), salt, opslimit=params.opslimit, memlimit=params.memlimit
    )


def _self_wrap_key(owner: IdentityKeys) -> bytes:
    return derive_key(bytes(owner.signing_key), _SELF_WRAP_CONTEXT)


def _verifier_ad(lookup_id: str, file_id: uuid.UUID, inviter_id: uuid.UUID) -> bytes:
    return canonical(_VERIFIER_LABEL, lookup_id.encode("ascii"), file_id.bytes, inviter_id.bytes)


def _mac(proof_key: bytes, file_id: uuid.UUID, redeemer: PublicIdentity) -> bytes:
    message = canonical(_REDEEM_LABEL, file_id.bytes, redeemer.account_id.bytes,
                        redeemer.fingerprint())
    return nacl.hashlib.blake2b(message, digest_size=PROOF_SIZE, key=proof_key,
                                person=_REDEEM_CONTEXT.ljust(16, b"\0")).digest()


def create_invitation(
    scope_keys: Sequence[ScopeKey],
    *,
    inviter: IdentityKeys,
    params: KdfParams | None = None,
) -> CreatedInvitation:
    """Draw a code and wrap ``scope_keys`` (all of one file) and the inviter's fingerprint
    under Argon2id(code); wrap the proof key for the inviter's own account.

    Returns the code (hand it over out of band, never upload it), the payload and the
    verifier to upload.
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
    plain = (bytes([len(scope_keys)]) + b"".join(k.to_bound_bytes() for k in scope_keys)
             + inviter.account_id.bytes + inviter.public_identity().fingerprint())
    key = _payload_key(code, salt, params)
    ciphertext = crypto_aead_xchacha20poly1305_ietf_encrypt(plain, unsealed._ad(), nonce, key)
    verifier_nonce = _seams.random_bytes(24)
    verifier = InvitationVerifier(verifier_nonce, crypto_aead_xchacha20poly1305_ietf_encrypt(
        derive_key(key, _PROOF_CONTEXT), _verifier_ad(code.lookup_id(), file_id,
                                                       inviter.account_id),
        verifier_nonce, _self_wrap_key(inviter)))
    payload = InvitationPayload(code.lookup_id(), file_id, salt, params, nonce, ciphertext)
    return CreatedInvitation(code, payload, verifier)


def redeem_invitation(code: InvitationCode, payload: InvitationPayload,
                      redeemer: PublicIdentity) -> RedeemedInvitation:
    """Open the payload with the code and prove that ``redeemer`` holds it; raises
    :class:`DecryptionError`.

    The invitee then seals the keys to its own identity with
    :func:`ecrin_e2ee.grants.grant_scope_keys` (granter = itself), trusts the inviter only
    with the fingerprint returned here, and sends the proof with the redemption.
    """
    if payload.lookup_id != code.lookup_id() or not payload.params.within_ceiling():
        raise DecryptionError()
    size = ScopeKey.BOUND_SIZE
    try:
        key = _payload_key(code, payload.salt, payload.params)
        plain = crypto_aead_xchacha20poly1305_ietf_decrypt(
            payload.ciphertext, payload._ad(), payload.nonce, key)
        count = plain[0]
        if count == 0 or len(plain) != 1 + count * size + 16 + _FINGERPRINT_SIZE:
            raise DecryptionError()
        keys = [
            ScopeKey.from_bound_bytes(plain[1 + i * size : 1 + (i + 1) * size])
            for i in range(count)
        ]
        tail = plain[1 + count * size:]
        inviter_id = uuid.UUID(bytes=tail[:16])
        fingerprint = tail[16:]
    except Exception:
        raise DecryptionError() from None
    if any(k.file_id != payload.file_id for k in keys):
        raise DecryptionError()
    proof = _mac(derive_key(key, _PROOF_CONTEXT), payload.file_id, redeemer)
    return RedeemedInvitation(keys, inviter_id, fingerprint, proof)


def redemption_proof(code: InvitationCode, payload: InvitationPayload,
                     redeemer: PublicIdentity) -> bytes:
    """The 32-byte proof alone (what :func:`redeem_invitation` returns as ``proof``)."""
    return redeem_invitation(code, payload, redeemer).proof


def check_redemption(verifier: InvitationVerifier, inviter: IdentityKeys, *, lookup_id: str,
                     file_id: uuid.UUID, redeemer: PublicIdentity, proof: bytes) -> None:
    """On any of the inviter's devices: does ``proof`` show that ``redeemer`` (the identity
    the directory serves for the account that redeemed) holds the code? Raises
    :class:`DecryptionError` otherwise (a swapped verifier, another identity, a forged
    proof)."""
    try:
        proof_key = crypto_aead_xchacha20poly1305_ietf_decrypt(
            verifier.ciphertext, _verifier_ad(lookup_id, file_id, inviter.account_id),
            verifier.nonce, _self_wrap_key(inviter))
    except Exception:
        raise DecryptionError() from None
    expected = _mac(proof_key, file_id, redeemer)
    if len(proof) != PROOF_SIZE or not sodium_memcmp(expected, proof):
        raise DecryptionError()
