"""ORM models of the sharing service: patient files, grants and blind-index tokens.

Nothing here names a patient: the file id, its owner, times, and keyed search tokens.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, ForeignKey, Index, Integer, String, Uuid
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from ecrin_platform.audit import AuditEventColumns


class Base(DeclarativeBase):
    """This service's own declarative base: its tables never mix with another's."""


metadata = Base.metadata


class PatientFile(Base):
    __tablename__ = "patient_files"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    owner_id: Mapped[uuid.UUID] = mapped_column(Uuid, index=True)
    #: pending until the kms holds its keyring; only active files are served.
    state: Mapped[str] = mapped_column(String(16), default="pending")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    #: scope -> the current scope-key version the kms holds (absent: 1); re-keys go to it
    key_versions: Mapped[dict[str, int] | None] = mapped_column(JSON, default=None)
    #: the record holding the patient's identity, as the owner's device named it (not
    #: secret: its kind is encrypted, its id only lets devices read a page in one request)
    identity_record_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, default=None)


class Grant(Base):
    """Who may do what on a file. The owner holds one too (relationship "owner")."""

    __tablename__ = "grants"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    file_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("patient_files.id", ondelete="CASCADE"))
    grantee_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    granter_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    relationship: Mapped[str] = mapped_column(String(16))
    #: scope -> "read" | "append"
    scopes: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16))
    #: "direct" (sealed by the granter) or "invitation" (sealed by the invitee on redemption)
    kind: Mapped[str] = mapped_column(String(16), default="direct")
    valid_from: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    valid_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)

    __table_args__ = (
        Index("ix_grants_file_grantee", "file_id", "grantee_id"),
        Index("ix_grants_grantee", "grantee_id", "status"),
    )


class SearchToken(Base):
    """A blind-index token (keyed hash of a normalised name, INS or birth date)."""

    __tablename__ = "search_tokens"

    file_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("patient_files.id", ondelete="CASCADE"),
                                               primary_key=True)
    token: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner_id: Mapped[uuid.UUID] = mapped_column(Uuid)

    __table_args__ = (Index("ix_search_tokens_owner_token", "owner_id", "token"),)


class Invitation(Base):
    """A pending grant for someone without an account yet. ``payload`` holds the scope keys
    wrapped under Argon2id(code); the code itself never reaches a server."""

    __tablename__ = "invitations"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    file_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("patient_files.id", ondelete="CASCADE"),
                                               index=True)
    inviter_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    #: derived from the code by a separate KDF: finds the invitation, opens nothing
    lookup_id: Mapped[str] = mapped_column(String(64), unique=True)
    relationship: Mapped[str] = mapped_column(String(16))
    scopes: Mapped[dict[str, Any]] = mapped_column(JSON)
    valid_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    #: InvitationVerifier: the proof key wrapped for the inviter's own account
    verifier: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    #: the redeemer's proof (b64, keyed by the code) that its identity holds the code
    redemption_proof: Mapped[str | None] = mapped_column(String(64), default=None)
    #: first time the payload was fetched: from then on the code holder may hold the keys
    looked_up_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    #: the file's key versions when it was made (its payload holds those keys)
    key_versions: Mapped[dict[str, int] | None] = mapped_column(JSON, default=None)
    #: when its cancellation or expiry queued the rotation (once)
    loss_queued_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True),
                                                            default=None)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    redeemed_by: Mapped[uuid.UUID | None] = mapped_column(Uuid, default=None)
    redeemed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    grant_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, default=None)
    cancelled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)


class Rotation(Base):
    """A scope whose key must be rotated because a member left (revoked or expired)."""

    __tablename__ = "rotations"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    file_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("patient_files.id", ondelete="CASCADE"))
    scope: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(16))
    grant_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, default=None)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    #: the new keys are stored at this version; done once the records are re-keyed to it
    rotated_version: Mapped[int | None] = mapped_column(Integer, default=None)
    done_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    done_version: Mapped[int | None] = mapped_column(Integer, default=None)

    __table_args__ = (Index("ix_rotations_file_pending", "file_id", "done_at"),)


class AuditEvent(Base, AuditEventColumns):
    """Append-only, hash-chained audit events of this service (identifiers only)."""
