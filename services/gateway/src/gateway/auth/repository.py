from __future__ import annotations

import uuid
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.models import Account, LoginChallenge, RefreshToken, Session


class SessionFacts(NamedTuple):
    account_id: uuid.UUID
    kind: str
    second_factor_verified: bool
    expires_at: datetime
    revoked_at: datetime | None
    role: str
    status: str


#: Built once (a statement made per call is built and keyed for the compiled cache each
#: time): asked on every forwarded request whose session check is not cached.
_SESSION_FACTS = (
    select(Session.account_id, Session.kind, Session.second_factor_verified,
           Session.expires_at, Session.revoked_at, Account.role, Account.status)
    .join(Account, Account.id == Session.account_id)
    .where(Session.id == bindparam("session_id")))


class AuthRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def session_facts(self, session_id: uuid.UUID) -> SessionFacts | None:
        """What every forwarded request checks, in one query: the session and its
        account's role and status."""
        row = (await self.session.execute(_SESSION_FACTS, {"session_id": session_id})
               ).one_or_none()
        return None if row is None else SessionFacts(*row)

    def add(self, obj: object) -> None:
        self.session.add(obj)

    async def flush(self) -> None:
        await self.session.flush()

    async def account(self, account_id: uuid.UUID) -> Account | None:
        return await self.session.get(Account, account_id)

    async def account_for_update(self, account_id: uuid.UUID) -> Account | None:
        """The account row, locked to the end of the transaction (its second factor's
        last accepted step changes under this lock)."""
        row = await self.session.execute(
            select(Account).where(Account.id == account_id).with_for_update()
            .execution_options(populate_existing=True))
        return row.scalar_one_or_none()

    async def kdf_salt(self, account_id: uuid.UUID) -> bytes | None:
        row = await self.session.execute(select(Account.kdf_salt).where(Account.id == account_id))
        return row.scalar_one_or_none()

    async def account_by_email(self, email: str) -> Account | None:
        row = await self.session.execute(select(Account).where(Account.email == email))
        return row.scalar_one_or_none()

    async def delete_account(self, account_id: uuid.UUID) -> None:
        await self.session.execute(delete(Account).where(Account.id == account_id))

    async def challenge_for_update(self, challenge_id: uuid.UUID) -> LoginChallenge | None:
        row = await self.session.execute(
            select(LoginChallenge).where(LoginChallenge.id == challenge_id).with_for_update())
        return row.scalar_one_or_none()

    async def purge_challenges(self, before: datetime) -> None:
        await self.session.execute(delete(LoginChallenge).where(LoginChallenge.expires_at < before))

    async def session_row(self, session_id: uuid.UUID) -> Session | None:
        return await self.session.get(Session, session_id)

    async def sessions_of(self, account_id: uuid.UUID, now: datetime) -> list[Session]:
        rows = await self.session.execute(
            select(Session).where(Session.account_id == account_id, Session.revoked_at.is_(None),
                                  Session.expires_at > now).order_by(Session.created_at))
        return list(rows.scalars())

    async def revoke_sessions(self, account_id: uuid.UUID, now: datetime, reason: str,
                              *, except_id: uuid.UUID | None = None) -> None:
        stmt = update(Session).where(Session.account_id == account_id,
                                     Session.revoked_at.is_(None))
        if except_id is not None:
            stmt = stmt.where(Session.id != except_id)
        await self.session.execute(stmt.values(revoked_at=now, revoked_reason=reason))

    async def refresh_token_for_update(self, token_hash: str) -> RefreshToken | None:
        row = await self.session.execute(
            select(RefreshToken).where(RefreshToken.token_hash == token_hash).with_for_update())
        return row.scalar_one_or_none()
