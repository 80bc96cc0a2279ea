"""Every query on records, versions and idempotency keys."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, delete, exists, insert, literal_column, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from records_api.models import Base, IdempotencyKey, Record, RecordVersion

#: Page position: (created_at, id) of the last record served.
Position = tuple[datetime, uuid.UUID]


class RecordsRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def record(self, record_id: uuid.UUID, *, for_update: bool = False) -> Record | None:
        """A record that is not tombstoned."""
        query = select(Record).where(Record.id == record_id, Record.deleted_at.is_(None))
        if for_update:
            query = query.with_for_update()
        return (await self.session.execute(query)).scalar_one_or_none()

    async def any_record(self, record_id: uuid.UUID) -> Record | None:
        """Including tombstones: a client-made id is never reused."""
        return await self.session.get(Record, record_id)

    async def version(self, record_id: uuid.UUID, version: int, *,
                      for_update: bool = False) -> RecordVersion | None:
        query = select(RecordVersion).where(RecordVersion.record_id == record_id,
                                            RecordVersion.version == version)
        if for_update:
            query = query.with_for_update()
        return (await self.session.execute(query)).scalar_one_or_none()

    async def committed_versions(self, record_id: uuid.UUID, *, before: int | None,
                                 limit: int) -> list[RecordVersion]:
        query = select(RecordVersion).where(RecordVersion.record_id == record_id,
                                            RecordVersion.committed.is_(True))
        if before is not None:
            query = query.where(RecordVersion.version < before)
        query = query.order_by(RecordVersion.version.desc()).limit(limit)
        return list((await self.session.execute(query)).scalars())

    async def listed_page(self, file_id: uuid.UUID, scope: str, after: Position | None,
                          limit: int) -> list[tuple[Record, RecordVersion]]:
        """Up to ``limit`` committed, live records of one (file, scope), newest first,
        strictly older than ``after``: one range of ``ix_records_listing``."""
        query = (
            select(Record, RecordVersion)
            .join(RecordVersion, (RecordVersion.record_id == Record.id)
                  & (RecordVersion.version == Record.current_version))
            .where(Record.file_id == file_id, Record.scope == scope,
                   # Literals, not parameters, so the partial index's predicate is implied.
                   Record.state == literal_column("'committed'"), Record.deleted_at.is_(None))
            .order_by(Record.created_at.desc(), Record.id.desc())
            .limit(limit)
        )
        if after is not None:
            query = query.where(tuple_(Record.created_at, Record.id) < tuple_(
                bindparam("after_created", after[0], type_=Record.created_at.type),
                bindparam("after_id", after[1], type_=Record.id.type)))
        return [(r, v) for r, v in (await self.session.execute(query)).all()]

    async def idempotency_key(self, account_id: uuid.UUID, key: str) -> IdempotencyKey | None:
        return await self.session.get(IdempotencyKey, (account_id, key))

    async def before_create(self, account_id: uuid.UUID, key: str, record_id: uuid.UUID
                            ) -> tuple[str | None, dict[str, Any] | None, bool]:
        """In one query: (request digest, response) of an earlier create with this
        idempotency key, if any, and whether a record (tombstones included) has this id."""
        earlier = (IdempotencyKey.account_id == account_id) & (IdempotencyKey.key == key)
        row = (await self.session.execute(select(
            select(IdempotencyKey.request_digest).where(earlier).scalar_subquery(),
            select(IdempotencyKey.response).where(earlier).scalar_subquery(),
            exists().where(Record.id == record_id)))).one()
        return row[0], row[1], bool(row[2])

    async def insert(self, *rows: Base) -> None:
        """New rows, in this order, as plain INSERTs (no unit-of-work bookkeeping: the
        create path writes five rows per request)."""
        for row in rows:
            table = cast(Table, row.__table__)
            await self.session.execute(insert(table).values(
                {column.key: getattr(row, column.key) for column in table.columns}))

    async def delete_version(self, version: RecordVersion) -> None:
        await self.session.delete(version)

    def add(self, obj: Record | RecordVersion | IdempotencyKey) -> None:
        self.session.add(obj)

    async def forget_idempotency_keys(self, before: datetime) -> int:
        result = await self.session.execute(
            delete(IdempotencyKey).where(IdempotencyKey.created_at < before))
        return int(getattr(result, "rowcount", 0) or 0)
