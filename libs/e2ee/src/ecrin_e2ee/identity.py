"""Identity keys (X25519 for encryption, Ed25519 for signing) and public identities.

A :class:`PublicIdentity` is self-signed: the Ed25519 key signs
``canonical("ecrin/identity/v1", account_id(16), enc_public(32), sign_public(32))``.
Its fingerprint is ``BLAKE2b-256(person="ecrin-fingerprnt")`` of the same canonical bytes,
and a safety number for two identities is 60 digits that both people can read aloud.
"""

from __future__ import annotations

import hmac
import uuid
from dataclasses import dataclass
from typing import Any, ClassVar, Self

from nacl.exceptions import BadSignatureError
from nacl.public import PrivateKey, PublicKey
from nacl.signing import SigningKey, VerifyKey

from ecrin_e2ee import _seams
from ecrin_e2ee._wire import b64d, b64e, canonical, digest, field, parse_uuid
from ecrin_e2ee.errors import FormatError, IdentityMismatchError

__all__ = ["IdentityKeys", "PublicIdentity"]

_SELF_SIG_LABEL = b"ecrin/identity/v1"
_FINGERPRINT_CONTEXT = b"ecrin-fingerprnt"
_SAFETY_CONTEXT = b"ecrin-safety-num"


def _identity_bytes(account_id: uuid.UUID, enc_public: bytes, sign_public: bytes) -> bytes:
    return canonical(_SELF_SIG_LABEL, account_id.bytes, enc_public, sign_public)


@dataclass(frozen=True, slots=True)
class PublicIdentity:
    """An account's public keys with their self-signature. Construction verifies it."""

    account_id: uuid.UUID
    enc_public: bytes
    sign_public: bytes
    self_signature: bytes

    KEY_SIZE: ClassVar[int] = 32
    SIGNATURE_SIZE: ClassVar[int] = 64
    FINGERPRINT_SIZE: ClassVar[int] = 32

    def __post_init__(self) -> None:
        if len(self.enc_public) != self.KEY_SIZE or len(self.sign_public) != self.KEY_SIZE:
            raise FormatError("public keys must be 32 bytes")
        if len(self.self_signature) != self.SIGNATURE_SIZE:
            raise FormatError("signature must be 64 bytes")
        self.verify()

    def verify(self) -> None:
        """Check the self-signature; raises :class:`IdentityMismatchError`."""
        try:
            VerifyKey(self.sign_public).verify(
                _identity_bytes(self.account_id, self.enc_public, self.sign_public),
                self.self_signature,
            )
        except (BadSignatureError, ValueError):
            raise IdentityMismatchError("identity self-signature does not verify") from None

    @property
    def verify_key(self) -> VerifyKey:
        return VerifyKey(self.sign_public)

    @property
    def public_key(self) -> PublicKey:
        return PublicKey(self.enc_public)

    def fingerprint(self) -> bytes:
        """32-byte fingerprint over the account id and both public keys."""
        return digest(
            _identity_bytes(self.account_id, self.enc_public, self.sign_public),
            _FINGERPRINT_CONTEXT,
        )

    def fingerprint_hex(self) -> str:
        """The fingerprint as 64 lowercase hex digits in groups of 4 (for display)."""
        h = self.fingerprint().hex()
        return " ".join(h[i : i + 4] for i in range(0, len(h), 4))

    def verify_fingerprint(self, pinned: bytes | str) -> None:
        """Compare against a pinned fingerprint (bytes or hex, spaces allowed).

        Raises :class:`IdentityMismatchError` if it differs.
        """
        if isinstance(pinned, str):
            try:
                pinned = bytes.fromhex("".join(pinned.split()))
            except ValueError:
                raise IdentityMismatchError("pinned fingerprint is not hex") from None
        if not hmac.compare_digest(self.fingerprint(), pinned):
            raise IdentityMismatchError("identity does not match the pinned fingerprint")

    def _safety_digits(self) -> str:
        raw = digest(self.fingerprint(), _SAFETY_CONTEXT, size=30)
        return "".join(
            f"{int.from_bytes(raw[i : i + 5], 'big') % 100000:05d}" for i in range(0, 30, 5)
        )

    def safety_number(self, other: PublicIdentity) -> str:
        """60 digits in 12 groups of 5, identical on both sides (order-independent).

        Each identity contributes 30 digits derived from its fingerprint; the two halves are
        sorted so that both people see the same number, as in Signal.
        """
        halves = sorted([self._safety_digits(), other._safety_digits()])
        digits = "".join(halves)
        return " ".join(digits[i : i + 5] for i in range(0, 60, 5))

    def to_json(self) -> dict[str, Any]:
        return {
            "account_id": str(self.account_id),
            "enc_public": b64e(self.enc_public),
            "sign_public": b64e(self.sign_public),
            "self_signature": b64e(self.self_signature),
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Self:
        """Parse and verify; raises :class:`FormatError` or :class:`IdentityMismatchError`."""
        return cls(
            account_id=parse_uuid(field(obj, "account_id")),
            enc_public=b64d(field(obj, "enc_public"), size=32, what="enc_public"),
            sign_public=b64d(field(obj, "sign_public"), size=32, what="sign_public"),
            self_signature=b64d(field(obj, "self_signature"), size=64, what="self_signature"),
        )


class IdentityKeys:
    """An account's private identity keys; ``to_bytes`` is the 64-byte wrapped plaintext."""

    SIZE: ClassVar[int] = 64
    __slots__ = ("_public", "account_id", "encryption_key", "signing_key")

    def __init__(
        self, account_id: uuid.UUID, encryption_key: PrivateKey, signing_key: SigningKey
    ) -> None:
        self.account_id = account_id
        self.encryption_key = encryption_key
        self.signing_key = signing_key
        self._public: PublicIdentity | None = None

    @classmethod
    def generate(cls, account_id: uuid.UUID) -> Self:
        """Fresh random X25519 and Ed25519 keys (32 random bytes each)."""
        enc = PrivateKey(_seams.random_bytes(32))
        sign = SigningKey(_seams.random_bytes(32))
        return cls(account_id, enc, sign)

    @classmethod
    def from_bytes(cls, account_id: uuid.UUID, data: bytes) -> Self:
        """From ``x25519_private(32) || ed25519_seed(32)``."""
        if len(data) != cls.SIZE:
            raise ValueError("identity keys must be 64 bytes")
        return cls(account_id, PrivateKey(data[:32]), SigningKey(data[32:]))

    def to_bytes(self) -> bytes:
        return bytes(self.encryption_key) + bytes(self.signing_key)

    def public_identity(self) -> PublicIdentity:
        """The self-signed public identity to publish in the kms directory. Made once (a
        signature and its check): opening a page of keyring entries asks for it per entry."""
        if self._public is None:
            self._public = self._make_public_identity()
        return self._public

    def _make_public_identity(self) -> PublicIdentity:
        enc_public = bytes(self.encryption_key.public_key)
        sign_public = bytes(self.signing_key.verify_key)
        signature = self.signing_key.sign(
            _identity_bytes(self.account_id, enc_public, sign_public)
        ).signature
        return PublicIdentity(self.account_id, enc_public, sign_public, signature)

    def sign(self, message: bytes) -> bytes:
        """Detached Ed25519 signature."""
        return self.signing_key.sign(message).signature

    def __repr__(self) -> str:
        return f"IdentityKeys(account_id={self.account_id}, <secret>)"

    __str__ = __repr__
