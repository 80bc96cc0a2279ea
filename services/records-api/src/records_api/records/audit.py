"""Audit events of the records API: one hash-chained log per patient file
(``file:<id>``), identifiers only. Writes are recorded in the transaction that makes
them; ciphertext reads in a short write transaction of their own, before any byte is
served, so that a read that cannot be recorded does not happen."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ecrin_platform.audit import AuditLog
from records_api.models import AuditEvent

AUDIT = AuditLog(AuditEvent, "records-api")


def file_chain(file_id: uuid.UUID) -> str:
    return f"file:{file_id}"


def record_target(record_id: uuid.UUID, version: int | None = None) -> str:
    return f"record:{record_id}" + (f"/v{version}" if version is not None else "")


async def audit(session: AsyncSession, *, actor: uuid.UUID, file_id: uuid.UUID, action: str,
                target: str) -> None:
    # ``AuditLog.append`` serialises appends to one chain (a transaction-scoped advisory
    # lock on PostgreSQL, BEGIN IMMEDIATE on SQLite) before it reads the chain's end.
    await AUDIT.append(session, chain=file_chain(file_id), actor=actor, action=action,
                       target=target)


async def audit_events(session: AsyncSession, *, actor: uuid.UUID, file_id: uuid.UUID,
                       events: list[tuple[str, str]]) -> None:
    """``(action, target)`` events in order: what ``audit`` for each would write, in one
    lock and one read of the chain's end."""
    await AUDIT.append_many(session, chain=file_chain(file_id), actor=actor, events=events)


async def audit_many(session: AsyncSession, *, actor: uuid.UUID, file_id: uuid.UUID,
                     action: str, targets: list[str]) -> None:
    """One ``action`` event per target, in order."""
    await audit_events(session, actor=actor, file_id=file_id,
                       events=[(action, target) for target in targets])


async def audit_read(sessionmaker: async_sessionmaker[AsyncSession], *, actor: uuid.UUID,
                     file_id: uuid.UUID, action: str, target: str) -> None:
    async with sessionmaker() as session, session.begin():
        await audit(session, actor=actor, file_id=file_id, action=action, target=target)
