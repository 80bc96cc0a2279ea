from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, NamedTuple, cast

from sqlalchemy import Table, bindparam, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from ecrin_platform.db import autocommit_session, engine_of
from gateway.models import Account, LoginChallenge, RefreshToken, Session


class ChallengeFacts(NamedTuple):
    """What a challenge answer needs of an account, without loading the account."""

    id: uuid.UUID
    status: str
    kdf_salt: bytes
    kdf_params: dict[str, Any]


class SpentChallenge(NamedTuple):
    account_id: uuid.UUID | None
    payload: bytes


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

#: The login path's statements, built once (each runs on every challenge or login).
#: populate_existing: a step-up's account, loaded before the lock, is read again under it.
_ACCOUNT_FOR_UPDATE = (select(Account).where(Account.id == bindparam("account_id"))
                       .with_for_update().execution_options(populate_existing=True))
_NEW_SESSION = insert(cast(Table, Session.__table__))
_NEW_REFRESH_TOKEN = insert(cast(Table, RefreshToken.__table__))
_CHALLENGE_FACTS = select(Account.id, Account.status, Account.kdf_salt, Account.kdf_params
                          ).where(Account.email == bindparam("email"))
_challenges = cast(Table, LoginChallenge.__table__)
_NEW_CHALLENGE = insert(_challenges)
_PURGE_CHALLENGES = delete(_challenges).where(_challenges.c.expires_at < bindparam("before"))
#: PostgreSQL: the same look-up and the challenge's row in one statement. The challenge
#: belongs to the account only when it is active (as ``add_challenge`` is called); the
#: INSERT runs whether or not the email is known, so both answers cost the same.
_facts = (select(Account.id, Account.status, Account.kdf_salt, Account.kdf_params)
          .where(Account.email == bindparam("email")).cte("facts"))
_CHALLENGE_FACTS_ADDING = select(_facts.c.id, _facts.c.status, _facts.c.kdf_salt,
                                 _facts.c.kdf_params).add_cte(
    insert(_challenges).values(
        id=bindparam("challenge_id"), action=bindparam("action"),
        payload=bindparam("payload"), expires_at=bindparam("expires_at"), used_at=None,
        account_id=select(_facts.c.id).where(_facts.c.status == "active").scalar_subquery(),
    ).cte("made"))
#: Spends an unused, unexpired challenge for one action and says what it was, in one
#: statement. On PostgreSQL the UPDATE locks the row: a concurrent spend of the same
#: challenge waits, then finds it used and matches nothing.
_SPEND_CHALLENGE = (
    update(_challenges)
    .where(_challenges.c.id == bindparam("spend_id"), _challenges.c.used_at.is_(None),
           _challenges.c.action == bindparam("spend_action"),
           _challenges.c.expires_at >= bindparam("spent_at"))
    .values(used_at=bindparam("spent_at"))
    .returning(_challenges.c.account_id, _challenges.c.payload))
#: PostgreSQL: the same spend and the challenge's account, locked, in one statement. An
#: inner join: a challenge unknown, spent, for another action or of no account gives no
#: row, and the caller's refusal rolls the spend back.
_spent = _SPEND_CHALLENGE.cte("spent")
_SPEND_LOCKING_ACCOUNT = (
    select(Account, _spent.c.payload)
    .join(_spent, Account.id == _spent.c.account_id)
    .with_for_update(of=Account).execution_options(populate_existing=True))
_sessions = cast(Table, Session.__table__)
#: PostgreSQL: a new session's row and its first refresh token's in one statement.
_NEW_SESSION_WITH_TOKEN = insert(cast(Table, RefreshToken.__table__)).values(
    token_hash=bindparam("token_hash"), session_id=bindparam("id"),
    issued_at=bindparam("created_at"), used_at=None,
).add_cte(insert(_sessions).values(
    {c.name: bindparam(c.name) for c in _sessions.columns}).cte("new_session"))


class AuthRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    @property
    def engine(self) -> AsyncEngine:
        return engine_of(self.session)

    @property
    def postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"

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
        row = await self.session.execute(_ACCOUNT_FOR_UPDATE, {"account_id": account_id})
        return row.scalar_one_or_none()

    async def add_session(self, session_id: uuid.UUID, account_id: uuid.UUID, *, kind: str,
                          device_name: str | None, second_factor_verified: bool,
                          now: datetime, expires_at: datetime, refresh_token_hash: str
                          ) -> None:
        """A new session's row (every column named, none left to a default) and its first
        refresh token's, issued ``now``: one statement on PostgreSQL."""
        row = {"id": session_id, "account_id": account_id, "kind": kind,
               "device_name": device_name, "second_factor_verified": second_factor_verified,
               "created_at": now, "last_used_at": now, "expires_at": expires_at,
               "revoked_at": None, "revoked_reason": None}
        if self.postgres:
            await self.session.execute(_NEW_SESSION_WITH_TOKEN,
                                       {**row, "token_hash": refresh_token_hash})
            return
        await self.session.execute(_NEW_SESSION, row)
        await self.add_refresh_token(refresh_token_hash, session_id, now)

    async def add_refresh_token(self, token_hash: str, session_id: uuid.UUID,
                                issued_at: datetime) -> None:
        """After the session's row (``add_session``, or a session already stored)."""
        await self.session.execute(_NEW_REFRESH_TOKEN, {
            "token_hash": token_hash, "session_id": session_id, "issued_at": issued_at,
            "used_at": None})

    async def kdf_salt(self, account_id: uuid.UUID) -> bytes | None:
        row = await self.session.execute(select(Account.kdf_salt).where(Account.id == account_id))
        return row.scalar_one_or_none()

    async def account_by_email(self, email: str) -> Account | None:
        row = await self.session.execute(select(Account).where(Account.email == email))
        return row.scalar_one_or_none()

    async def delete_account(self, account_id: uuid.UUID) -> None:
        await self.session.execute(delete(Account).where(Account.id == account_id))

    async def challenge_facts(self, email: str) -> ChallengeFacts | None:
        row = (await self.session.execute(_CHALLENGE_FACTS, {"email": email})).one_or_none()
        return None if row is None else ChallengeFacts(*row)

    async def challenge_facts_adding(self, email: str, challenge_id: uuid.UUID, action: str,
                                     payload: bytes, expires_at: datetime, *,
                                     purge_before: datetime | None = None
                                     ) -> ChallengeFacts | None:
        """PostgreSQL: ``challenge_facts`` and ``add_challenge`` (for the account if it is
        active, else for none) in one statement outside any transaction block: one round
        trip instead of four with BEGIN and COMMIT. The row is committed by the statement.
        ``purge_before``: ``purge_challenges`` first, on the same connection (a request
        never holds two)."""
        async with autocommit_session(self.engine) as session:
            if purge_before is not None:
                await session.execute(_PURGE_CHALLENGES, {"before": purge_before})
            row = (await session.execute(_CHALLENGE_FACTS_ADDING, {
                "email": email, "challenge_id": challenge_id, "action": action,
                "payload": payload, "expires_at": expires_at})).one_or_none()
        return None if row is None else ChallengeFacts(*row)

    async def add_challenge(self, challenge_id: uuid.UUID, account_id: uuid.UUID | None,
                            action: str, payload: bytes, expires_at: datetime) -> None:
        """One INSERT, without the unit of work (nothing reads the row back here)."""
        await self.session.execute(_NEW_CHALLENGE, {
            "id": challenge_id, "account_id": account_id, "action": action,
            "payload": payload, "expires_at": expires_at, "used_at": None})

    async def spend_challenge(self, challenge_id: uuid.UUID, action: str, now: datetime
                              ) -> SpentChallenge | None:
        """Marks the challenge used if it was not, is for ``action`` and has not expired;
        None otherwise. The account is the caller's to check: a refusal that rolls back
        leaves the challenge as it was."""
        row = (await self.session.execute(_SPEND_CHALLENGE, {
            "spend_id": challenge_id, "spend_action": action, "spent_at": now})).one_or_none()
        return None if row is None else SpentChallenge(*row)

    async def spend_challenge_locking_account(self, challenge_id: uuid.UUID, action: str,
                                              now: datetime
                                              ) -> tuple[SpentChallenge, Account] | None:
        """PostgreSQL: ``spend_challenge`` and ``account_for_update`` of its account in
        one statement; None when either finds nothing."""
        row = (await self.session.execute(_SPEND_LOCKING_ACCOUNT, {
            "spend_id": challenge_id, "spend_action": action, "spent_at": now})).one_or_none()
        if row is None:
            return None
        account, payload = row
        return SpentChallenge(account.id, payload), account

    async def purge_challenges(self, before: datetime) -> None:
        await self.session.execute(_PURGE_CHALLENGES, {"before": before})

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
