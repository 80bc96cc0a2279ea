"""ORM models of the kms: the public-key directory and wrapped identity keys."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Index, Integer, String, Uuid
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from ecrin_platform.audit import AuditEventColumns


class Base(DeclarativeBase):
    """This service's own declarative base: its tables never mix with another's."""


metadata = Base.metadata


class DirectoryEntry(Base):
    """An account's public identity (self-signed) and its fingerprint."""

    __tablename__ = "directory"

    account_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    identity: Mapped[dict[str, Any]] = mapped_column(JSON)
    fingerprint: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class KeyChangeRow(Base):
    """One replacement of an account's identity: the identity it replaced and the statement,
    signed by that identity's key, naming the old and new fingerprints (``KeyChange``).
    ``seq`` counts the account's changes from 1; the directory serves them in order."""

    __tablename__ = "key_changes"

    account_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    previous_identity: Mapped[dict[str, Any]] = mapped_column(JSON)
    statement: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class WrappedKey(Base):
    """Identity private keys wrapped on the device: under a KEK (one per KDF salt) or
    under the recovery key. Opaque to the kms."""

    __tablename__ = "wrapped_keys"

    account_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    #: "passphrase" or "recovery"
    purpose: Mapped[str] = mapped_column(String(16), primary_key=True)
    #: the KDF salt (b64) for a passphrase wrap; "recovery" for the recovery wrap
    key_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    wrap: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class KeyringEntryRow(Base):
    """A scope key version sealed to one member and signed by its granter."""

    __tablename__ = "keyring_entries"

    file_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    scope: Mapped[str] = mapped_column(String(16), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    member_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    granter_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    entry: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (Index("ix_keyring_member", "member_id", "file_id"),)


class KeyringVersion(Base):
    """The current version of each scope key of a file."""

    __tablename__ = "keyring_versions"

    file_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    scope: Mapped[str] = mapped_column(String(16), primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class AuditEvent(Base, AuditEventColumns):
    """Append-only, hash-chained audit events of this service (identifiers only)."""
