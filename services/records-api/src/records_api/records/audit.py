"""Audit events of the records API: one hash-chained log per scope of a patient file
(``file:<id>:<scope>``), identifiers only.

One chain per scope, not one per file filtered on reading: a chain shown whole is one a
reader can verify, and a reader who holds only the ``shared`` scope (a patient, a parent)
reads that scope's chain without learning the ids, counts or timing of clinical records.
Events written before chains were per scope stay in the file's chain (``file:<id>``),
served as it is to those who read the audit.

Writes are recorded in the transaction that makes them; ciphertext reads in a short write
transaction of their own, before any byte is served, so that a read that cannot be
recorded does not happen. A refused access to an existing record is recorded (outcome
``denied``) in a short transaction of its own too, since the request's own is rolled back.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ecrin_platform.audit import AuditLog, ChainEnd
from records_api.models import AuditEvent

AUDIT = AuditLog(AuditEvent, "records-api")
DENIED = "denied"

#: chain -> ``(action, target)`` events, in order.
ChainEvents = Mapping[str, Sequence[tuple[str, str]]]


def file_chain(file_id: uuid.UUID) -> str:
    """The file's chain of events written before chains were per scope."""
    return f"file:{file_id}"


def scope_chain(file_id: uuid.UUID, scope: str) -> str:
    return f"file:{file_id}:{scope}"


def record_target(record_id: uuid.UUID, version: int | None = None) -> str:
    return f"record:{record_id}" + (f"/v{version}" if version is not None else "")


async def audit(session: AsyncSession, *, actor: uuid.UUID, file_id: uuid.UUID, scope: str,
                action: str, target: str) -> None:
    # ``AuditLog.append`` serialises appends to one chain (a transaction-scoped advisory
    # lock on PostgreSQL, BEGIN IMMEDIATE on SQLite) before it reads the chain's end.
    await AUDIT.append(session, chain=scope_chain(file_id, scope), actor=actor, action=action,
                       target=target)


async def audit_events(session: AsyncSession, *, actor: uuid.UUID, file_id: uuid.UUID,
                       scope: str, events: Sequence[tuple[str, str]],
                       end: ChainEnd | None = None) -> None:
    """``(action, target)`` events in order: what ``audit`` for each would write, in one
    lock and one read of the chain's end (``end``: both done already, see
    ``AuditLog.append_many``)."""
    await AUDIT.append_many(session, chain=scope_chain(file_id, scope), actor=actor,
                            events=events, end=end)


async def audit_chains(session: AsyncSession, *, actor: uuid.UUID, events: ChainEvents,
                       outcome: str = "ok") -> None:
    """Events of several chains in one transaction. The chains are locked in name order,
    the same in every transaction that appends to more than one, so that two of them never
    wait on each other's lock."""
    for chain in sorted(events):
        await AUDIT.append_many(session, chain=chain, actor=actor, events=events[chain],
                                outcome=outcome)


async def audit_apart(sessionmaker: async_sessionmaker[AsyncSession], *, actor: uuid.UUID,
                      events: ChainEvents, outcome: str = "ok") -> None:
    """``audit_chains`` in a short transaction of its own (a read; a refusal)."""
    async with sessionmaker() as session, session.begin():
        await audit_chains(session, actor=actor, events=events, outcome=outcome)


async def audit_read(sessionmaker: async_sessionmaker[AsyncSession], *, actor: uuid.UUID,
                     file_id: uuid.UUID, scope: str, action: str, target: str) -> None:
    await audit_apart(sessionmaker, actor=actor,
                      events={scope_chain(file_id, scope): [(action, target)]})
