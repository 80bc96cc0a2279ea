from __future__ import annotations

import functools
import uuid
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, Select, and_, bindparam, case, delete, func, literal_column, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased
from sqlalchemy.sql.elements import BindParameter, ColumnElement

from sharing.models import Grant, PatientFile, Rotation, SearchToken


def live_grant(now: datetime | BindParameter[Any]) -> ColumnElement[bool]:
    return and_(Grant.status == "active",
                or_(Grant.valid_from.is_(None), Grant.valid_from <= now),
                or_(Grant.valid_until.is_(None), Grant.valid_until > now))


@functools.cache
def _access_statement(one: bool, include_pending: bool, rotators: frozenset[str]) -> Select[Any]:
    """Built once per kind (a statement made per call is built and keyed for the compiled
    cache each time): asked on every cache miss of the records API and the kms."""
    # The separator written in the SQL: a bound one would be rendered at every execution
    # (the stubs type it as a str only, hence the ignore).
    pending = (select(func.aggregate_strings(Rotation.scope,
                                             literal_column("','")))  # type: ignore[arg-type]
               .where(Rotation.file_id == PatientFile.id, Rotation.done_at.is_(None),
                      Rotation.rotated_version.is_(None))
               .scalar_subquery())
    # When another of the account's grants on the file starts: the answer may change then
    # without any notice (the newest live grant wins), so it is not kept past it.
    later = aliased(Grant)
    next_start = (select(func.min(later.valid_from))
                  .where(later.file_id == PatientFile.id,
                         later.grantee_id == bindparam("account_id"),
                         later.status == "active", later.valid_from > bindparam("now"))
                  .scalar_subquery())
    stmt = (select(PatientFile.id, PatientFile.state, PatientFile.key_versions,
                   Grant.relationship, Grant.scopes, Grant.valid_until,
                   case((or_(*(Grant.relationship == r for r in sorted(rotators))), pending)),
                   next_start)
            .join(Grant, Grant.file_id == PatientFile.id)
            .where(PatientFile.id == bindparam("file_id") if one
                   else PatientFile.id.in_(bindparam("file_ids", expanding=True)),
                   PatientFile.deleted_at.is_(None), Grant.grantee_id == bindparam("account_id"),
                   live_grant(bindparam("now")))
            .order_by(Grant.created_at.desc()))
    if not include_pending:
        stmt = stmt.where(PatientFile.state == "active")
    return stmt.limit(1) if one else stmt


class FilesRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    def add(self, obj: object) -> None:
        self.session.add(obj)

    async def flush(self) -> None:
        await self.session.flush()

    async def file(self, file_id: uuid.UUID) -> PatientFile | None:
        return await self.session.get(PatientFile, file_id)

    async def live_grant(self, file_id: uuid.UUID, account_id: uuid.UUID,
                         now: datetime) -> Grant | None:
        rows = await self.session.execute(
            select(Grant).where(Grant.file_id == file_id, Grant.grantee_id == account_id,
                                live_grant(now)).order_by(Grant.created_at.desc()).limit(1))
        return rows.scalar_one_or_none()

    async def access_rows(self, account_id: uuid.UUID, file_ids: Sequence[uuid.UUID],
                          now: datetime, *, include_pending: bool,
                          rotators: Collection[str]) -> Sequence[Row[Any]]:
        """The access decision's one statement: each of ``file_ids`` not deleted (and
        active, unless ``include_pending``) with the account's live grants on it, newest
        first; for a grant whose relationship is one of ``rotators``, the scopes of the
        file a member left whose new key version is not stored yet (index
        ix_rotations_file_pending), as one comma-joined string (a scope name holds no
        comma; repeats possible), else NULL. One whose new version is stored but whose
        records are not all re-keyed yet is not pending: new content under that version
        is safe; and when the account's next grant on the file starts, if one is to. A row
        is (id, state, key_versions, relationship, scopes, valid_until, pending,
        next_start)."""
        one = len(file_ids) == 1
        params = {"account_id": account_id, "now": now,
                  **({"file_id": file_ids[0]} if one else {"file_ids": list(file_ids)})}
        stmt = _access_statement(one, include_pending, frozenset(rotators))
        return (await self.session.execute(stmt, params)).all()

    async def accessible_files(self, account_id: uuid.UUID, now: datetime, *,
                               tokens: list[str], after: tuple[datetime, uuid.UUID] | None,
                               limit: int) -> list[tuple[PatientFile, Grant]]:
        stmt = (select(PatientFile, Grant)
                .join(Grant, Grant.file_id == PatientFile.id)
                .where(Grant.grantee_id == account_id, live_grant(now),
                       PatientFile.state == "active", PatientFile.deleted_at.is_(None)))
        if tokens:
            matching = (select(SearchToken.file_id)
                        .where(SearchToken.owner_id == account_id,
                               SearchToken.token.in_(tokens))
                        .group_by(SearchToken.file_id)
                        .having(func.count() == len(set(tokens))))
            stmt = stmt.where(PatientFile.id.in_(matching))
        if after is not None:
            created, file_id = after
            stmt = stmt.where(or_(PatientFile.created_at < created,
                                  and_(PatientFile.created_at == created,
                                       PatientFile.id < file_id)))
        stmt = stmt.order_by(PatientFile.created_at.desc(), PatientFile.id.desc()).limit(limit)
        return [(f, g) for f, g in (await self.session.execute(stmt)).all()]

    async def replace_tokens(self, file_id: uuid.UUID, owner_id: uuid.UUID,
                             tokens: list[str]) -> None:
        await self.session.execute(delete(SearchToken).where(SearchToken.file_id == file_id))
        for token in sorted(set(tokens)):
            self.session.add(SearchToken(file_id=file_id, token=token, owner_id=owner_id))

    async def tokens_of(self, file_id: uuid.UUID) -> list[str]:
        rows = await self.session.execute(
            select(SearchToken.token).where(SearchToken.file_id == file_id))
        return sorted(rows.scalars())
