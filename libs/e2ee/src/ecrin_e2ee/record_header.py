"""The signed record header: binary layout, signatures and the content-key wrap.

Layout (big-endian integers; 410 bytes in format version 1)::

    off  len  field
      0    4  magic "ECRH"
      4    1  format version (1)
      5   16  file_id (UUID bytes)
     21   16  record_id
     37    4  record_version (u32)
     41    1  scope (1 clinical, 2 shared, 3 administrative)
     42   16  author_id
     58   24  secretstream header
     82    4  chunk_size (u32, 65536 in version 1)
     86    8  padded_length (u64): plaintext bytes in the stream, padding included
     94   32  metadata_digest = BLAKE2b-256(person "ecrin-meta-dgst", metadata ciphertext)
    126   32  content_digest  = SHA-256("ecrin-content-v1" || chunk_0 || chunk_1 ...)
    158   32  dek_commitment  = BLAKE2b-256(key DEK, person "ecrin-dek-commit")
    190   64  author_signature: Ed25519(author, canonical("ecrin/record-author/v1", bytes 0..190))
    254    4  key_version (u32): scope key version wrapping the DEK
    258   16  wrapper_id: account that made the wrap (author, or the member who re-keyed)
    274   24  wrap_nonce
    298   48  wrapped_dek = XChaCha20-Poly1305(scope key, wrap_nonce, DEK,
                   AD = canonical("ecrin/dek-wrap/v1", bytes 0..190, key_version(u32)))
    346   64  wrap_signature: Ed25519(wrapper, canonical("ecrin/record-wrap/v1", bytes 0..346))

Bytes 0..190 are the immutable *core*, signed by the author. Bytes 254..410 are the *wrap*,
signed by whoever made it; re-keying replaces only the wrap. The commitment lets a reader
check that a re-wrapped DEK is the one the author committed to.
"""

from __future__ import annotations

import hmac
import struct
import uuid
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Self

from nacl.bindings import (
    crypto_aead_xchacha20poly1305_ietf_decrypt,
    crypto_aead_xchacha20poly1305_ietf_encrypt,
)
from nacl.signing import VerifyKey

from ecrin_e2ee import _seams
from ecrin_e2ee._wire import b64d, b64e, canonical, derive_key, field, parse_uuid, u32
from ecrin_e2ee.errors import DecryptionError, FormatError
from ecrin_e2ee.identity import IdentityKeys, PublicIdentity
from ecrin_e2ee.keyring import Scope, ScopeKey

__all__ = ["RecordHeader", "unwrap_dek"]

MAGIC = b"ECRH"
FORMAT_VERSION = 1
CORE_SIZE = 190
IDENTITY_SIZE = 58  # magic .. author_id: what chunk and metadata AD bind
SIGNED_WRAP_SIZE = 346
HEADER_SIZE = 410
_AUTHOR_LABEL = b"ecrin/record-author/v1"
_WRAP_LABEL = b"ecrin/record-wrap/v1"
_DEK_LABEL = b"ecrin/dek-wrap/v1"
_COMMIT_CONTEXT = b"ecrin-dek-commit"
_CORE = struct.Struct(">4sB16s16sIB16s24sIQ32s32s32s")
_WRAP = struct.Struct(">I16s24s48s")
assert _CORE.size == CORE_SIZE and _WRAP.size == SIGNED_WRAP_SIZE - CORE_SIZE - 64


def dek_commitment(dek: bytes) -> bytes:
    return derive_key(dek, _COMMIT_CONTEXT)


@dataclass(frozen=True, slots=True)
class RecordHeader:
    """A parsed record header. Parsing never verifies; :meth:`verify` does."""

    file_id: uuid.UUID
    record_id: uuid.UUID
    record_version: int
    scope: Scope
    author_id: uuid.UUID
    stream_header: bytes
    chunk_size: int
    padded_length: int
    metadata_digest: bytes
    content_digest: bytes
    dek_commitment: bytes
    author_signature: bytes
    key_version: int
    wrapper_id: uuid.UUID
    wrap_nonce: bytes
    wrapped_dek: bytes
    wrap_signature: bytes
    format_version: int = FORMAT_VERSION

    SIZE: ClassVar[int] = HEADER_SIZE
    MAGIC: ClassVar[bytes] = MAGIC

    def core_bytes(self) -> bytes:
        return _CORE.pack(
            MAGIC,
            self.format_version,
            self.file_id.bytes,
            self.record_id.bytes,
            self.record_version,
            self.scope.code,
            self.author_id.bytes,
            self.stream_header,
            self.chunk_size,
            self.padded_length,
            self.metadata_digest,
            self.content_digest,
            self.dek_commitment,
        )

    def identity_bytes(self) -> bytes:
        """Bytes 0..58 (format, ids, version, scope, author): bound into chunks and metadata."""
        return self.core_bytes()[:IDENTITY_SIZE]

    def _wrap_fields(self) -> bytes:
        return _WRAP.pack(
            self.key_version, self.wrapper_id.bytes, self.wrap_nonce, self.wrapped_dek
        )

    def to_bytes(self) -> bytes:
        return self.core_bytes() + self.author_signature + self._wrap_fields() + self.wrap_signature

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        """Parse; any malformation raises :class:`DecryptionError` (it came from a server)."""
        if not isinstance(data, bytes | bytearray) or len(data) != HEADER_SIZE:
            raise DecryptionError()
        data = bytes(data)
        try:
            (
                magic,
                fmt,
                file_id,
                record_id,
                record_version,
                scope,
                author_id,
                stream_header,
                chunk_size,
                padded_length,
                meta_digest,
                content_digest,
                commitment,
            ) = _CORE.unpack(data[:CORE_SIZE])
            key_version, wrapper_id, wrap_nonce, wrapped_dek = _WRAP.unpack(
                data[CORE_SIZE + 64 : SIGNED_WRAP_SIZE]
            )
            if magic != MAGIC or fmt != FORMAT_VERSION:
                raise FormatError("not an Écrin record header")
            return cls(
                file_id=uuid.UUID(bytes=file_id),
                record_id=uuid.UUID(bytes=record_id),
                record_version=record_version,
                scope=Scope.from_code(scope),
                author_id=uuid.UUID(bytes=author_id),
                stream_header=stream_header,
                chunk_size=chunk_size,
                padded_length=padded_length,
                metadata_digest=meta_digest,
                content_digest=content_digest,
                dek_commitment=commitment,
                author_signature=data[CORE_SIZE : CORE_SIZE + 64],
                key_version=key_version,
                wrapper_id=uuid.UUID(bytes=wrapper_id),
                wrap_nonce=wrap_nonce,
                wrapped_dek=wrapped_dek,
                wrap_signature=data[SIGNED_WRAP_SIZE:],
                format_version=fmt,
            )
        except (struct.error, ValueError):
            raise DecryptionError() from None

    def to_json(self) -> dict[str, Any]:
        """The ids in the clear (for the server's indexes) and the whole header in base64url."""
        return {
            "file_id": str(self.file_id),
            "record_id": str(self.record_id),
            "record_version": self.record_version,
            "scope": self.scope.value,
            "key_version": self.key_version,
            "author_id": str(self.author_id),
            "wrapper_id": str(self.wrapper_id),
            "header": b64e(self.to_bytes()),
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Self:
        """Parse the ``header`` field and check the clear ids agree with it."""
        try:
            header = cls.from_bytes(b64d(field(obj, "header"), what="header"))
            clear = (
                parse_uuid(field(obj, "file_id")),
                parse_uuid(field(obj, "record_id")),
                field(obj, "record_version"),
                field(obj, "scope"),
                field(obj, "key_version"),
                parse_uuid(field(obj, "author_id")),
                parse_uuid(field(obj, "wrapper_id")),
            )
        except FormatError:
            raise DecryptionError() from None
        if clear != (
            header.file_id,
            header.record_id,
            header.record_version,
            header.scope.value,
            header.key_version,
            header.author_id,
            header.wrapper_id,
        ):
            raise DecryptionError()
        return header

    # --- signatures -----------------------------------------------------------------

    def author_message(self) -> bytes:
        return canonical(_AUTHOR_LABEL, self.core_bytes())

    def wrap_message(self) -> bytes:
        return canonical(
            _WRAP_LABEL, self.core_bytes() + self.author_signature + self._wrap_fields()
        )

    def verify(self, author: PublicIdentity, wrapper: PublicIdentity | None = None) -> None:
        """Check the author signature and the wrap signature; :class:`DecryptionError`.

        ``wrapper`` is needed only when ``wrapper_id`` differs from ``author_id`` (a re-keyed
        header); the caller must have verified both identities (pinned fingerprints).
        """
        if wrapper is None:
            wrapper = author
        if author.account_id != self.author_id or wrapper.account_id != self.wrapper_id:
            raise DecryptionError()
        try:
            VerifyKey(author.sign_public).verify(self.author_message(), self.author_signature)
            VerifyKey(wrapper.sign_public).verify(self.wrap_message(), self.wrap_signature)
        except Exception:
            raise DecryptionError() from None

    def with_wrap(self, scope_key: ScopeKey, dek: bytes, signer: IdentityKeys) -> RecordHeader:
        """A copy whose DEK is wrapped under ``scope_key`` and signed by ``signer``."""
        if (scope_key.file_id, scope_key.scope) != (self.file_id, self.scope):
            raise ValueError("scope key belongs to another file or scope")
        nonce = _seams.random_bytes(24)
        wrapped = crypto_aead_xchacha20poly1305_ietf_encrypt(
            dek, _dek_ad(self.core_bytes(), scope_key.version), nonce, scope_key.to_bytes()
        )
        unsigned = replace(
            self,
            key_version=scope_key.version,
            wrapper_id=signer.account_id,
            wrap_nonce=nonce,
            wrapped_dek=wrapped,
        )
        return replace(unsigned, wrap_signature=signer.sign(unsigned.wrap_message()))


def _dek_ad(core: bytes, key_version: int) -> bytes:
    return canonical(_DEK_LABEL, core, u32(key_version))


def unwrap_dek(header: RecordHeader, scope_key: ScopeKey) -> bytes:
    """Unwrap the DEK and check it against the author's commitment; DecryptionError."""
    if (scope_key.file_id, scope_key.scope, scope_key.version) != (
        header.file_id,
        header.scope,
        header.key_version,
    ):
        raise DecryptionError()
    try:
        dek = crypto_aead_xchacha20poly1305_ietf_decrypt(
            header.wrapped_dek,
            _dek_ad(header.core_bytes(), header.key_version),
            header.wrap_nonce,
            scope_key.to_bytes(),
        )
    except Exception:
        raise DecryptionError() from None
    if not hmac.compare_digest(dek_commitment(dek), header.dek_commitment):
        raise DecryptionError()
    return dek
