"""Secrets a device keeps for its own account only (the names it gave its contacts), sealed
under a key derived from the account's identity keys: readable on any device where the
account is unlocked, by nothing and no one else, and never sent to a server.

Key: libsodium ``crypto_kdf_derive_from_key(32, subkey_id, "ecrinloc", ed25519_seed)``
(BLAKE2b, key = the Ed25519 seed, salt = the subkey id as 8 little-endian bytes then 8 zero
bytes, personalisation = the context then 8 zero bytes, no message). Each purpose has its
subkey id (:data:`PURPOSES`), so a key for one use opens nothing of another.

Sealed text: ``ecrin-ls1.<b64url(nonce(24) || XChaCha20-Poly1305 ciphertext)>``, with
associated data ``canonical("ecrin-ls1", account id, purpose)``: a sealed value copied to
another account's profile, or used for another purpose, does not open. Every failure is
the one opaque :class:`DecryptionError`. Byte-level format: ``docs/protocol.md``.
"""

from __future__ import annotations

import struct
import uuid

import nacl.hashlib
from nacl.bindings import (
    crypto_aead_xchacha20poly1305_ietf_decrypt,
    crypto_aead_xchacha20poly1305_ietf_encrypt,
)
from nacl.exceptions import CryptoError

from ecrin_e2ee import _seams
from ecrin_e2ee._wire import b64d, b64e, canonical
from ecrin_e2ee.errors import DecryptionError
from ecrin_e2ee.identity import IdentityKeys

__all__ = ["PURPOSES", "local_open", "local_seal"]

LABEL = "ecrin-ls1"
KDF_CONTEXT = b"ecrinloc"
NONCE_SIZE = 24
TAG_SIZE = 16
#: purpose -> crypto_kdf subkey id. Never reuse an id for another purpose.
#: "device-state": the web app's pins, bindings and high-water marks (web/src/device-store.ts).
PURPOSES: dict[str, int] = {"contacts": 1, "device-state": 2}


def local_key(identity: IdentityKeys, purpose: str) -> bytes:
    """``crypto_kdf_derive_from_key`` of the identity's Ed25519 seed for ``purpose``."""
    subkey_id = PURPOSES[purpose]
    seed = bytes(identity.signing_key)
    return nacl.hashlib.blake2b(b"", digest_size=32, key=seed,
                                salt=struct.pack("<Q", subkey_id) + bytes(8),
                                person=KDF_CONTEXT + bytes(8)).digest()


def _ad(account_id: uuid.UUID, purpose: str) -> bytes:
    return canonical(LABEL.encode(), account_id.bytes, purpose.encode())


def local_seal(identity: IdentityKeys, purpose: str, plaintext: bytes) -> str:
    """``plaintext`` sealed for this account's own devices, for ``purpose``."""
    nonce = _seams.random_bytes(NONCE_SIZE)
    ciphertext = crypto_aead_xchacha20poly1305_ietf_encrypt(
        plaintext, _ad(identity.account_id, purpose), nonce, local_key(identity, purpose))
    return f"{LABEL}.{b64e(nonce + ciphertext)}"


def local_open(identity: IdentityKeys, purpose: str, sealed: str) -> bytes:
    """What :func:`local_seal` sealed, or :class:`DecryptionError`."""
    try:
        label, body = sealed.split(".")
        raw = b64d(body)
        if label != LABEL or len(raw) < NONCE_SIZE + TAG_SIZE:
            raise DecryptionError
        return crypto_aead_xchacha20poly1305_ietf_decrypt(
            raw[NONCE_SIZE:], _ad(identity.account_id, purpose), raw[:NONCE_SIZE],
            local_key(identity, purpose))
    except (ValueError, CryptoError, KeyError):
        raise DecryptionError() from None
