"""ORM models of the gateway: accounts, second factors, sessions, challenges."""

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
    LargeBinary,
    String,
    Uuid,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from ecrin_platform.audit import AuditEventColumns


class Base(DeclarativeBase):
    """This service's own declarative base: its tables never mix with another's."""


metadata = Base.metadata


class Account(Base):
    __tablename__ = "accounts"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    role: Mapped[str] = mapped_column(String(32))
    #: pending until the kms holds the account's keys; only active accounts log in.
    status: Mapped[str] = mapped_column(String(16), default="pending")
    login_public_key: Mapped[bytes] = mapped_column(LargeBinary(32))
    recovery_public_key: Mapped[bytes] = mapped_column(LargeBinary(32))
    kdf_salt: Mapped[bytes] = mapped_column(LargeBinary(16))
    kdf_params: Mapped[dict[str, Any]] = mapped_column(JSON)
    signup_key: Mapped[str] = mapped_column(String(128))
    signup_digest: Mapped[str] = mapped_column(String(64))
    #: The TOTP seed sealed under the gateway's TOTP key (``ecrin-ar1.<key id>.<...>``).
    totp_secret: Mapped[str | None] = mapped_column(String(255), default=None)
    totp_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    #: The last TOTP time step accepted: a code of that step or an older one is refused.
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger, default=None)
    #: Argon2id (salted) of the SHA-256 of each unused one-time recovery code.
    recovery_code_hashes: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class LoginChallenge(Base):
    __tablename__ = "login_challenges"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    #: None for an unknown email: the challenge can never succeed.
    account_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, default=None)
    action: Mapped[str] = mapped_column(String(16))
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)

    __table_args__ = (Index("ix_login_challenges_expires_at", "expires_at"),)


class Session(Base):
    __tablename__ = "sessions"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"),
                                                  index=True)
    #: "normal", or "recovery": a recovery session may only reset the passphrase.
    kind: Mapped[str] = mapped_column(String(16), default="normal")
    device_name: Mapped[str | None] = mapped_column(String(120), default=None)
    second_factor_verified: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_used_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    revoked_reason: Mapped[str | None] = mapped_column(String(32), default=None)


class RefreshToken(Base):
    """One row per refresh token ever issued; reusing a used one revokes the session."""

    __tablename__ = "refresh_tokens"

    #: SHA-256 of the token: a database dump yields no usable token.
    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    session_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"),
                                                  index=True)
    issued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)


class AuditEvent(Base, AuditEventColumns):
    """Append-only, hash-chained audit events of this service (identifiers only)."""
