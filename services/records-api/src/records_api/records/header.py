"""Reading the clear fields of a record header, without any key.

The layout is ``docs/protocol.md`` §6.2 (``ecrin_e2ee.RecordHeader``). The records API only
needs the ids, scope, sizes, digests, key version and wrapper to check that a header belongs
where it is uploaded and who made its wrap; it never verifies a signature nor unwraps
anything, so it does not take the crypto library as a dependency: these few offsets are
written here a second time (``tests/records_api`` checks them against ``ecrin_e2ee``).
"""

from __future__ import annotations

import struct
import uuid
from dataclasses import dataclass

HEADER_SIZE = 410
MAGIC = b"ECRH"
FORMAT_VERSION = 1
#: Bytes 0..254 are the author-signed core and the author signature; 254..410 the wrap.
IMMUTABLE_SIZE = 254
#: A secretstream chunk is its plaintext plus this many bytes.
CHUNK_OVERHEAD = 17
SCOPES = {1: "clinical", 2: "shared", 3: "administrative"}
_CORE = struct.Struct(">4sB16s16sIB16s24sIQ32s32s32s")
_WRAP = struct.Struct(">I16s")  # key_version, wrapper_id


class MalformedHeader(ValueError):
    """Not a record header of a format this service knows."""


@dataclass(frozen=True, slots=True)
class HeaderFacts:
    file_id: uuid.UUID
    record_id: uuid.UUID
    record_version: int
    scope: str
    author_id: uuid.UUID
    chunk_size: int
    padded_length: int
    content_digest: bytes
    key_version: int
    #: The account that made (and signed) the wrap: the author, or whoever re-keyed it.
    wrapper_id: uuid.UUID

    @property
    def ciphertext_length(self) -> int:
        """Content ciphertext bytes: the padded stream plus each chunk's overhead."""
        chunks = -(-self.padded_length // self.chunk_size)
        return self.padded_length + chunks * CHUNK_OVERHEAD


def parse_header(data: bytes) -> HeaderFacts:
    if len(data) != HEADER_SIZE:
        raise MalformedHeader("a record header is 410 bytes")
    (magic, fmt, file_id, record_id, record_version, scope, author_id, _stream, chunk_size,
     padded_length, _meta_digest, content_digest, _commitment) = _CORE.unpack_from(data)
    if magic != MAGIC or fmt != FORMAT_VERSION:
        raise MalformedHeader("unknown header format")
    if scope not in SCOPES or chunk_size == 0 or padded_length == 0 or record_version == 0:
        raise MalformedHeader("invalid header fields")
    key_version, wrapper_id = _WRAP.unpack_from(data, IMMUTABLE_SIZE)
    return HeaderFacts(file_id=uuid.UUID(bytes=file_id), record_id=uuid.UUID(bytes=record_id),
                       record_version=record_version, scope=SCOPES[scope],
                       author_id=uuid.UUID(bytes=author_id), chunk_size=chunk_size,
                       padded_length=padded_length, content_digest=content_digest,
                       key_version=key_version, wrapper_id=uuid.UUID(bytes=wrapper_id))


CONTENT_DIGEST_PREFIX = b"ecrin-content-v1"
