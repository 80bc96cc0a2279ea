"""Server-side secrets at rest: small secrets a server must read back (a TOTP seed) sealed
under a key from its settings, and one-time codes it only checks (recovery codes) kept as
slow salted hashes.

Sealed text: ``ecrin-ar1.<key id>.<b64url(nonce || XChaCha20-Poly1305 ciphertext)>``; the
associated data is the label, the key id and what the secret belongs to (an account id),
so a sealed value moved to another row does not open. The key id (8 hex characters of a
keyed BLAKE2b of the key) lets a keyring hold the current key and older ones: values
sealed under an old key still open, and are re-sealed under the current one when used.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable
from typing import ClassVar

from nacl.bindings import (
    crypto_aead_xchacha20poly1305_ietf_decrypt,
    crypto_aead_xchacha20poly1305_ietf_encrypt,
)
from nacl.exceptions import CryptoError, InvalidkeyError
from nacl.pwhash import argon2id

from ecrin_e2ee import _seams
from ecrin_e2ee._secret import SecretKey
from ecrin_e2ee.errors import DecryptionError

__all__ = ["AtRestKey", "AtRestKeyring", "OneTimeCodeHash"]

LABEL = "ecrin-ar1"


def _b64e(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class AtRestKey(SecretKey):
    """A 32-byte key that seals a server's small secrets (XChaCha20-Poly1305)."""

    NONCE_SIZE: ClassVar[int] = 24

    @classmethod
    def from_text(cls, text: str) -> AtRestKey:
        """The settings form: 32 bytes in base64url (padding optional)."""
        try:
            return cls(_b64d(text.strip()))
        except ValueError:
            raise ValueError("an at-rest key is 32 bytes in base64url") from None

    def to_text(self) -> str:
        return _b64e(self.to_bytes())

    @property
    def key_id(self) -> str:
        return hashlib.blake2b(b"ecrin-at-rest-key-id", key=self.to_bytes(),
                               digest_size=4).hexdigest()

    def _ad(self, context: bytes) -> bytes:
        return f"{LABEL}\n{self.key_id}\n".encode() + context

    def seal(self, plaintext: bytes, context: bytes) -> str:
        nonce = _seams.random_bytes(self.NONCE_SIZE)
        ct = crypto_aead_xchacha20poly1305_ietf_encrypt(plaintext, self._ad(context), nonce,
                                                         self.to_bytes())
        return f"{LABEL}.{self.key_id}.{_b64e(nonce + ct)}"

    def open(self, sealed: str, context: bytes) -> bytes:
        try:
            label, key_id, body = sealed.split(".")
            raw = _b64d(body)
            if label != LABEL or key_id != self.key_id or len(raw) < self.NONCE_SIZE + 16:
                raise DecryptionError
            return crypto_aead_xchacha20poly1305_ietf_decrypt(
                raw[self.NONCE_SIZE:], self._ad(context), raw[:self.NONCE_SIZE],
                self.to_bytes())
        except (ValueError, CryptoError):
            raise DecryptionError from None


class AtRestKeyring:
    """The current key, which seals, and older ones, which still open (key rotation)."""

    def __init__(self, current: AtRestKey, old: Iterable[AtRestKey] = ()) -> None:
        self.current = current
        self._by_id = {k.key_id: k for k in old}
        self._by_id[current.key_id] = current

    @staticmethod
    def is_sealed(value: str) -> bool:
        return value.startswith(LABEL + ".")

    def seal(self, plaintext: bytes, context: bytes) -> str:
        return self.current.seal(plaintext, context)

    def open(self, sealed: str, context: bytes) -> bytes:
        parts = sealed.split(".")
        key = self._by_id.get(parts[1]) if len(parts) == 3 else None
        if key is None:
            raise DecryptionError
        return key.open(sealed, context)

    def is_current(self, sealed: str) -> bool:
        return sealed.startswith(f"{LABEL}.{self.current.key_id}.")


class OneTimeCodeHash:
    """Argon2id (libsodium ``crypto_pwhash_str``, its own random salt) of a one-time code
    a server only checks. Modest limits: a code has ~48 random bits and is tried under a
    rate limit; a login tries up to ten stored hashes and stays well under a second."""

    OPSLIMIT: ClassVar[int] = 2
    MEMLIMIT: ClassVar[int] = 19 * 1024 * 1024

    @classmethod
    def hash(cls, code: bytes) -> str:
        return argon2id.str(code, opslimit=cls.OPSLIMIT, memlimit=cls.MEMLIMIT).decode()

    @staticmethod
    def verify(stored: str, code: bytes) -> bool:
        try:
            return bool(argon2id.verify(stored.encode(), code))
        except (InvalidkeyError, CryptoError, ValueError):
            return False
