"""ORM models of the records-api service; its own metadata, its own database.

Everything stored here is ciphertext or an identifier: the service holds no key.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Uuid,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from ecrin_platform.audit import AuditEventColumns


class Base(DeclarativeBase):
    """This service's own declarative base: its tables never mix with another's."""


metadata = Base.metadata

#: The predicate of the partial listing index; queries repeat it verbatim (not as bound
#: parameters) so that both PostgreSQL and SQLite can prove the index applies.
LISTED = "state = 'committed' AND deleted_at IS NULL"


class Record(Base):
    """A record of a patient file: its identity, scope and lifecycle, never its content."""

    __tablename__ = "records"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)  # made by the client
    file_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    scope: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    #: Latest committed version; 0 while the first version is still being uploaded.
    current_version: Mapped[int] = mapped_column(Integer, default=0)
    #: "pending" until the content of version 1 is uploaded, then "committed".
    state: Mapped[str] = mapped_column(String(16))
    #: Tombstone: set by DELETE; the purge removes the ciphertext later.
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    purged_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    created_by: Mapped[uuid.UUID] = mapped_column(Uuid)

    __table_args__ = (
        # Keyset pagination per (file, scope), newest first: one index range per page.
        Index("ix_records_listing", "file_id", "scope", "created_at", "id",
              postgresql_where=text(LISTED), sqlite_where=text(LISTED)),
        Index("ix_records_deleted_at", "deleted_at",
              postgresql_where=text("deleted_at IS NOT NULL AND purged_at IS NULL"),
              sqlite_where=text("deleted_at IS NOT NULL AND purged_at IS NULL")),
    )


class RecordVersion(Base):
    """One version: the 410-byte signed header and the metadata ciphertext."""

    __tablename__ = "record_versions"

    record_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("records.id", ondelete="CASCADE"), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    header: Mapped[bytes] = mapped_column(LargeBinary)
    metadata_ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    #: Bytes of content ciphertext, as the header implies.
    content_length: Mapped[int] = mapped_column(BigInteger)
    key_version: Mapped[int] = mapped_column(Integer)
    author: Mapped[uuid.UUID] = mapped_column(Uuid)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    committed: Mapped[bool] = mapped_column(Boolean, default=False)
    committed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True),
                                                          nullable=True)
    #: The upload whose chunk rows are this version's content, once committed.
    content_upload_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)


class ReplacedWrap(Base):
    """A header as it was before a re-key or a restore replaced its wrap: kept so that the
    file's owner can put a good wrap back after a bad re-key (``POST .../wrap``). Only
    bytes 254..410 of the kept header differ from the stored one's. Purged with the record."""

    __tablename__ = "replaced_wraps"

    #: Insertion order: the latest kept wrap of a key version is the one a restore takes.
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                    primary_key=True, autoincrement=True)
    record_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("records.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    key_version: Mapped[int] = mapped_column(Integer)
    header: Mapped[bytes] = mapped_column(LargeBinary)
    replaced_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    replaced_by: Mapped[uuid.UUID] = mapped_column(Uuid)
    #: "rekey" or "restore": what replaced it. A restore only takes back what a re-key
    #: replaced (a wrap the owner took away stays in the history, never comes back).
    cause: Mapped[str] = mapped_column(String(16))

    __table_args__ = (
        Index("ix_replaced_wraps_version", "record_id", "version", "key_version"),
    )


class ContentUpload(Base):
    """One attempt at uploading a version's content. Its chunk rows are written in short
    transactions of their own; the version adopts the upload only when it is complete."""

    __tablename__ = "content_uploads"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    record_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    version: Mapped[int] = mapped_column(Integer)
    account_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    #: A resumable upload session (``records.resumable``): its rows survive a cut request,
    #: and it is purged only after ``resumable_upload_after_s`` without an append.
    resumable: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    #: When the last append of a resumable session began.
    touched_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    #: Its rows are files under the content directory, not ``content_chunks`` rows
    #: (``records.content_rows``).
    in_files: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))

    __table_args__ = (
        Index("ix_content_uploads_record", "record_id", "version"),
        Index("ix_content_uploads_started", "started_at"),
        Index("ix_content_uploads_in_files", "id", postgresql_where=text("in_files"),
              sqlite_where=text("in_files = 1")),
    )


class ContentChunk(Base):
    """At most ``CONTENT_ROW_BYTES`` of content ciphertext; ``seq`` counts from 0. (The rows
    of an upload ``in_files`` are files instead.)"""

    __tablename__ = "content_chunks"

    upload_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("content_uploads.id", ondelete="CASCADE"), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class IdempotencyKey(Base):
    """A create request already answered: same key and body -> same answer."""

    __tablename__ = "idempotency_keys"

    account_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    request_digest: Mapped[str] = mapped_column(String(64))
    record_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    status: Mapped[int] = mapped_column(Integer)
    response: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (Index("ix_idempotency_keys_created", "created_at"),)


class AuditEvent(Base, AuditEventColumns):
    """Append-only, hash-chained audit events of this service (identifiers only)."""
