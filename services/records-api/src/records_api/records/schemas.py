"""Request and response bodies. Binary fields are base64url without padding."""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, WithJsonSchema

from records_api.records.header import HEADER_SIZE

_B64URL = re.compile(r"^[A-Za-z0-9_-]*$")
#: Metadata ciphertexts are padded JSON (titles, kinds, dates): small by design.
MAX_METADATA_BYTES = 64 << 10
REKEY_BATCH = 500
#: Content ciphertext up to this size may travel inside the create request (``content``):
#: one request and one transaction instead of a create and an upload. Base64 makes it a
#: third larger, well under the 1 MiB body limit of ordinary routes.
INLINE_CONTENT_MAX = 256 << 10
#: Headers per page of ``GET /v1/records/headers`` (about 0.6 KiB of JSON each).
HEADERS_PAGE_MAX = 2000


def b64e(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64d(value: object) -> bytes:
    if isinstance(value, bytes):
        return value
    if not isinstance(value, str) or not _B64URL.match(value) or len(value) % 4 == 1:
        raise ValueError("expected base64url without padding")
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        raise ValueError("expected base64url without padding") from None


B64Bytes = Annotated[
    bytes,
    BeforeValidator(_b64d),
    PlainSerializer(b64e, return_type=str),
    WithJsonSchema({"type": "string", "contentEncoding": "base64url"}),
]
Scope = Literal["clinical", "shared", "administrative"]
HeaderBytes = Annotated[B64Bytes, Field(min_length=HEADER_SIZE, max_length=HEADER_SIZE)]
MetadataBytes = Annotated[B64Bytes, Field(min_length=1, max_length=MAX_METADATA_BYTES)]


class VersionIn(BaseModel):
    """A new version of an existing record. Its content is either uploaded next
    (``PUT .../content``) or, when small, sent here in ``content``: the version is then
    committed by this one request."""

    model_config = ConfigDict(extra="forbid")

    header: HeaderBytes
    metadata_ciphertext: MetadataBytes
    content_length: int = Field(ge=1, description="Bytes of content ciphertext")
    content: B64Bytes | None = Field(
        default=None, min_length=1, max_length=INLINE_CONTENT_MAX,
        description=f"The content ciphertext itself, when at most {INLINE_CONTENT_MAX} "
                    "bytes: the version is committed at once (its length and digest must "
                    "match the header). Larger content is uploaded with PUT .../content.")


class RecordIn(VersionIn):
    record_id: uuid.UUID
    file_id: uuid.UUID
    scope: Scope


class VersionOut(BaseModel):
    record_id: uuid.UUID
    version: int
    key_version: int
    content_length: int
    author_id: uuid.UUID
    created_at: datetime
    committed: bool
    header: B64Bytes
    metadata_ciphertext: B64Bytes


class RecordOut(BaseModel):
    """A record and one of its versions (the latest committed one, or the pending one
    just created)."""

    record_id: uuid.UUID
    file_id: uuid.UUID
    scope: Scope
    state: Literal["pending", "committed"]
    created_at: datetime
    updated_at: datetime
    created_by: uuid.UUID
    current_version: int = Field(description="Latest committed version; 0 while pending")
    version: VersionOut


class RecordWithContent(RecordOut):
    """``GET /v1/records/{id}?include=content``: the latest version and, when it is at most
    ``INLINE_CONTENT_MAX`` bytes, its content ciphertext (absent otherwise: download it)."""

    content: B64Bytes | None = Field(
        default=None, description=f"The content ciphertext, when at most {INLINE_CONTENT_MAX} "
                                  "bytes and asked for with include=content")


class RecordPage(BaseModel):
    items: list[RecordOut]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page")


class VersionPage(BaseModel):
    items: list[VersionOut]
    next_before: int | None = Field(description="Pass as ?before= for older versions")


class HeaderItem(BaseModel):
    """One committed version's header, and what a rotating device needs to re-key it."""

    record_id: uuid.UUID
    version: int
    key_version: int
    header: B64Bytes


class HeaderPage(BaseModel):
    items: list[HeaderItem]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page")


class RekeyItem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    record_id: uuid.UUID
    version: int = Field(ge=1)
    header: HeaderBytes


class RekeyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: list[RekeyItem] = Field(min_length=1, max_length=REKEY_BATCH)


class RekeyedItem(BaseModel):
    record_id: uuid.UUID
    version: int
    key_version: int
    changed: bool


class RekeyOut(BaseModel):
    items: list[RekeyedItem]


class WrapRestoreIn(BaseModel):
    """Which kept wrap to put back: the one of this key version a re-key replaced."""

    model_config = ConfigDict(extra="forbid")

    key_version: int = Field(ge=1, le=0xFFFFFFFF)
