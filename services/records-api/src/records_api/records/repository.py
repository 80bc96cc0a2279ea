"""Every query on records, versions and idempotency keys."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any, NamedTuple, cast

from sqlalchemy import (
    CompoundSelect,
    Row,
    Select,
    Table,
    bindparam,
    delete,
    exists,
    func,
    insert,
    literal_column,
    select,
    tuple_,
    update,
)
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from ecrin_platform.audit import GENESIS, ChainEnd
from ecrin_platform.db import engine_of
from records_api.models import (
    AuditEvent,
    Base,
    ContentChunk,
    IdempotencyKey,
    Record,
    RecordVersion,
    ReplacedWrap,
)
from records_api.records.audit import AUDIT, scope_chain

#: Page position: (created_at, id) of the last record served.
Position = tuple[datetime, uuid.UUID]
#: Headers page position: (created_at, record id, version) of the last version served.
HeaderPosition = tuple[datetime, uuid.UUID, int]
_VERSIONS = cast(Table, RecordVersion.__table__)
_REPLACED = cast(Table, ReplacedWrap.__table__)


class ScopedRecord(NamedTuple):
    id: uuid.UUID
    file_id: uuid.UUID
    scope: str
    created_by: uuid.UUID


class KeptWrap(NamedTuple):
    """A header as it was before a re-key or a restore replaced its wrap."""

    record_id: uuid.UUID
    version: int
    key_version: int
    header: bytes
    replaced_at: datetime
    replaced_by: uuid.UUID
    cause: str


class BeforeCreate(NamedTuple):
    """What a create reads before it writes (``RecordsRepository.before_create``)."""

    seen_digest: str | None
    seen_response: dict[str, Any] | None
    taken: bool
    #: The audit chain's end, read without its lock (None: read after it, later).
    end: ChainEnd | None


class VersionWithContent(NamedTuple):
    version: RecordVersion
    #: Its whole content, when small enough to travel inline.
    content: bytes | None
    #: PostgreSQL: the end of the audit chain its read is recorded in, read without the
    #: chain's lock (None on SQLite).
    end: ChainEnd | None


class ReadWithEvent(NamedTuple):
    """One value a read releases, to be read by the statement that records the read
    (``ReadAuditor``): ``with_event`` returns it as column ``released`` beside the event's
    seq; ``alone`` reads it by itself, once the event was written another way."""

    with_event: Any
    alone: Any
    params: dict[str, Any]

    @classmethod
    def inline_content(cls, upload_id: uuid.UUID) -> ReadWithEvent:
        """The first content row of an upload (the whole content of a small version)."""
        return cls(_INLINE_CONTENT_WITH_EVENT, _INLINE_CONTENT, {"upload_id": upload_id})


class StoredWrap(NamedTuple):
    key_version: int
    header: bytes


#: The end (seq, hash) of the audit chain named by parameter ``chain``, as two columns of
#: another query: read without the chain's lock (``AuditLog.insert_after_lock``).
_CHAIN_END = (AUDIT.chain_end.with_only_columns(AuditEvent.seq).scalar_subquery(),
              AUDIT.chain_end.with_only_columns(AuditEvent.hash).scalar_subquery())
_EARLIER = ((IdempotencyKey.account_id == bindparam("account_id"))
            & (IdempotencyKey.key == bindparam("key")))
#: Built once (a statement made per call is compiled from its cache key each time).
_BEFORE_CREATE = select(
    select(IdempotencyKey.request_digest).where(_EARLIER).scalar_subquery(),
    select(IdempotencyKey.response).where(_EARLIER).scalar_subquery(),
    exists().where(Record.id == bindparam("record_id")))
#: The same, reading the audit chain's end without its lock (PostgreSQL, the unlocked
#: create: ``insert_sealed``).
_BEFORE_CREATE_WITH_END = _BEFORE_CREATE.add_columns(*_CHAIN_END)
_LIVE_RECORD = select(Record).where(Record.id == bindparam("record_id"),
                                    Record.deleted_at.is_(None))
_LIVE_RECORD_FOR_UPDATE = _LIVE_RECORD.with_for_update()
_VERSION_WITH_CONTENT = (
    select(RecordVersion, ContentChunk.data)
    .outerjoin(ContentChunk, (ContentChunk.upload_id == RecordVersion.content_upload_id)
               & (ContentChunk.seq == 0)
               & (RecordVersion.content_length <= bindparam("inline_max")))
    .where(RecordVersion.record_id == bindparam("record_id"),
           RecordVersion.version == bindparam("version")))
_VERSION_WITH_CONTENT_AND_END = _VERSION_WITH_CONTENT.add_columns(*_CHAIN_END)
#: A live record and its current version (outer join: a pending record has none yet), in
#: one query; on PostgreSQL with the end of the record's audit chain, named from its
#: columns as ``records.audit.scope_chain`` names it (the name is read too, and the end
#: used only when the two agree). Not the content: it is read once the caller may read it.
_LIVE_RECORD_WITH_LATEST = (
    select(Record, RecordVersion)
    .outerjoin(RecordVersion, (RecordVersion.record_id == Record.id)
               & (RecordVersion.version == Record.current_version))
    .where(Record.id == bindparam("record_id"), Record.deleted_at.is_(None)))
_RECORD_CHAIN = func.concat("file:", Record.file_id, ":", Record.scope)
_LIVE_RECORD_WITH_LATEST_AND_END = _LIVE_RECORD_WITH_LATEST.add_columns(*(
    select(column).where(AuditEvent.chain == _RECORD_CHAIN)
    .order_by(AuditEvent.seq.desc()).limit(1).scalar_subquery()
    for column in (AuditEvent.seq, AuditEvent.hash)), _RECORD_CHAIN)
_INLINE_CONTENT = select(ContentChunk.data).where(ContentChunk.upload_id == bindparam("upload_id"),
                                                  ContentChunk.seq == 0)
#: PostgreSQL: a read's audit event written the unlocked way and, in the same statement,
#: the content it releases (``AuditLog.append_unlocked``): one statement fewer per read,
#: and no content read that no event records.
_INLINE_CONTENT_WITH_EVENT = cast(Select[Any], AUDIT.insert_after_lock(1)).add_columns(
    _INLINE_CONTENT.scalar_subquery().label("released"))
#: PostgreSQL: the rows of ``insert`` and a query after them, as one statement.
_BATCHES: dict[tuple[tuple[str, ...], int, bool], Select[Any] | CompoundSelect] = {}


def _batch(tables: Sequence[Table], then: Select[Any] | CompoundSelect, *,
           after_lock: bool = False) -> Select[Any] | CompoundSelect:
    """``then`` preceded by one INSERT per table (data-modifying CTEs, parameters
    ``r<i>_<column>``): PostgreSQL runs them all, in one round trip, before the statement
    ends (foreign keys are checked then too). ``after_lock``: each row is written only once
    the statement wrote its first audit event (``AUDIT.first_event_cte``: after taking the
    audit chain's lock, only when the statement's sealed events follow the chain's end and
    no other append took their place), so that a refused end or a lost race writes nothing.
    Built once per shape."""
    key = (tuple(t.name for t in tables), id(then), after_lock)
    statement = _BATCHES.get(key)
    if statement is None:
        writes = []
        for i, table in enumerate(tables):
            params = [bindparam(f"r{i}_{column.key}", type_=column.type).label(column.key)
                      for column in table.columns]
            if after_lock:
                write = insert(table).from_select([column.key for column in table.columns],
                                                  select(*params).select_from(AUDIT.first_event_cte))
            else:
                write = insert(table).values({p.name: p.element for p in params})
            writes.append(write.cte(f"w{i}"))
        statement = then.add_cte(*writes)
        _BATCHES[key] = statement
    return statement


class RecordsRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def record(self, record_id: uuid.UUID, *, for_update: bool = False) -> Record | None:
        """A record that is not tombstoned."""
        query = _LIVE_RECORD_FOR_UPDATE if for_update else _LIVE_RECORD
        return (await self.session.execute(query, {"record_id": record_id})
                ).scalar_one_or_none()

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

    async def record_with_latest(self, record_id: uuid.UUID
                                 ) -> tuple[Record, VersionWithContent | None] | None:
        """``record`` and its current version (its ``content`` not read: None), in one
        query (a small record read whole: ``RecordsService.readable(latest=True)``)."""
        postgres = self.postgres
        row = (await self.session.execute(
            _LIVE_RECORD_WITH_LATEST_AND_END if postgres else _LIVE_RECORD_WITH_LATEST,
            {"record_id": record_id})).first()
        if row is None:
            return None
        record, version = row[0], row[1]
        if version is None:
            return record, None
        end: ChainEnd | None = None
        if postgres and row[4] == scope_chain(record.file_id, record.scope):
            end = (0, GENESIS) if row[2] is None else (row[2], row[3])
        return record, VersionWithContent(version, None, end)

    async def inline_content(self, upload_id: uuid.UUID) -> bytes | None:
        """The first content row of an upload (the whole content of a small version)."""
        data = (await self.session.execute(_INLINE_CONTENT, {"upload_id": upload_id})
                ).scalar_one_or_none()
        return None if data is None else bytes(data)

    async def version_with_content(self, record_id: uuid.UUID, version: int, *,
                                   inline_max: int, chain: str) -> VersionWithContent | None:
        """A version and, when its content is at most ``inline_max`` bytes, its first
        content row (the whole content of such a version), in one query; on PostgreSQL
        with the end of the audit ``chain`` its read will be recorded in, read without the
        chain's lock (``AuditLog.append_unlocked``)."""
        postgres = self.postgres
        row = (await self.session.execute(
            _VERSION_WITH_CONTENT_AND_END if postgres else _VERSION_WITH_CONTENT,
            {"record_id": record_id, "version": version, "inline_max": inline_max,
             **({"chain": chain} if postgres else {})})).first()
        if row is None:
            return None
        end: ChainEnd | None = None
        if postgres:
            end = (0, GENESIS) if row[2] is None else (row[2], row[3])
        return VersionWithContent(row[0], None if row[1] is None else bytes(row[1]), end)

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

    async def header_page(self, file_id: uuid.UUID, scope: str, below_key_version: int | None,
                          after: HeaderPosition | None, limit: int
                          ) -> Sequence[Row[datetime, uuid.UUID, int, int, bytes]]:
        """Up to ``limit`` committed versions of one (file, scope)'s live records, as rows
        (created_at, record_id, version, key_version, header), in (created_at, record id,
        version) order, strictly after ``after``: one range of ``ix_records_listing``
        joined to each record's versions by primary key. Only the columns a rotation needs
        (no metadata ciphertext, no ORM objects)."""
        position = tuple_(Record.created_at, Record.id)
        query = (
            select(Record.created_at, RecordVersion.record_id, RecordVersion.version,
                   RecordVersion.key_version, RecordVersion.header)
            .join(RecordVersion, RecordVersion.record_id == Record.id)
            .where(Record.file_id == file_id, Record.scope == scope,
                   # Literals, not parameters, so the partial index's predicate is implied.
                   Record.state == literal_column("'committed'"), Record.deleted_at.is_(None),
                   RecordVersion.committed.is_(True))
            .order_by(Record.created_at, Record.id, RecordVersion.version)
            .limit(limit)
        )
        if below_key_version is not None:
            query = query.where(RecordVersion.key_version < below_key_version)
        if after is not None:
            created = bindparam("after_created", after[0], type_=Record.created_at.type)
            record_id = bindparam("after_id", after[1], type_=Record.id.type)
            # The first bound is the index range; the second skips the versions of the
            # last record already served.
            query = query.where(position >= tuple_(created, record_id),
                                tuple_(Record.created_at, Record.id, RecordVersion.version)
                                > tuple_(created, record_id,
                                         bindparam("after_version", after[2])))
        return (await self.session.execute(query)).all()

    async def lock_live_records(self, ids: Collection[uuid.UUID]
                                ) -> dict[uuid.UUID, ScopedRecord]:
        """The live records among ``ids``, locked for update (four columns only)."""
        rows = await self.session.execute(
            select(Record.id, Record.file_id, Record.scope, Record.created_by)
            .where(Record.id.in_(ids), Record.deleted_at.is_(None)).with_for_update())
        return {row.id: ScopedRecord(row.id, row.file_id, row.scope, row.created_by)
                for row in rows}

    async def lock_wraps(self, ids: Collection[uuid.UUID], versions: Collection[int]
                         ) -> dict[tuple[uuid.UUID, int], StoredWrap]:
        """The stored header and key version of those records' versions, locked for update
        (never the metadata ciphertext)."""
        rows = await self.session.execute(
            select(RecordVersion.record_id, RecordVersion.version, RecordVersion.key_version,
                   RecordVersion.header)
            .where(RecordVersion.record_id.in_(ids), RecordVersion.version.in_(versions))
            .with_for_update())
        return {(row.record_id, row.version): StoredWrap(row.key_version, row.header)
                for row in rows}

    async def replace_wraps(self, wraps: Sequence[tuple[uuid.UUID, int, bytes, int]]) -> None:
        """Set (header, key_version) of each (record_id, version): one executemany."""
        if not wraps:
            return
        statement = (update(_VERSIONS)
                     .where(_VERSIONS.c.record_id == bindparam("w_record"),
                            _VERSIONS.c.version == bindparam("w_version"))
                     .values(header=bindparam("w_header"),
                             key_version=bindparam("w_key_version")))
        await self.session.execute(statement, [
            {"w_record": rid, "w_version": version, "w_header": header,
             "w_key_version": key_version} for rid, version, header, key_version in wraps])

    async def keep_wraps(self, kept: Sequence[KeptWrap]) -> None:
        """Append headers a re-key or a restore is about to replace: one executemany (the
        id is the database's, so the latest kept wrap is the one with the largest id)."""
        if not kept:
            return
        await self.session.execute(insert(_REPLACED), [row._asdict() for row in kept])

    async def kept_wrap(self, record_id: uuid.UUID, version: int,
                        key_version: int) -> KeptWrap | None:
        """The latest header of this version under ``key_version`` that a re-key replaced
        (never one a restore took away)."""
        row = (await self.session.execute(
            select(ReplacedWrap.record_id, ReplacedWrap.version, ReplacedWrap.key_version,
                   ReplacedWrap.header, ReplacedWrap.replaced_at, ReplacedWrap.replaced_by,
                   ReplacedWrap.cause)
            .where(ReplacedWrap.record_id == record_id, ReplacedWrap.version == version,
                   ReplacedWrap.key_version == key_version, ReplacedWrap.cause == "rekey")
            .order_by(ReplacedWrap.id.desc()).limit(1))).first()
        return KeptWrap(*row) if row is not None else None

    async def forget_wraps(self, record_id: uuid.UUID, version: int | None = None) -> None:
        """Drop the kept wraps of a record (or of one of its versions)."""
        statement = delete(ReplacedWrap).where(ReplacedWrap.record_id == record_id)
        if version is not None:
            statement = statement.where(ReplacedWrap.version == version)
        await self.session.execute(statement)

    async def idempotency_key(self, account_id: uuid.UUID, key: str) -> IdempotencyKey | None:
        return await self.session.get(IdempotencyKey, (account_id, key))

    @property
    def postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    @property
    def engine(self) -> AsyncEngine:
        return engine_of(self.session)

    async def before_create(self, account_id: uuid.UUID, key: str, record_id: uuid.UUID,
                            chain: str, *, locked: bool = True) -> BeforeCreate:
        """In one query: (request digest, response) of an earlier create with this
        idempotency key, if any, and whether a record (tombstones included) has this id.
        On PostgreSQL, ``locked``: after taking the lock of the audit ``chain`` the create
        will append to; not ``locked``: with that chain's end, read without the lock
        (``insert_sealed``). SQLite's writers are serialised by BEGIN IMMEDIATE already."""
        postgres = self.postgres
        statement = _BEFORE_CREATE
        if postgres and locked:
            # a statement of its own: the look-up's snapshot must come after the lock, or it
            # would miss a create with this idempotency key that committed while it waited
            await AUDIT.lock(self.session, chain)
        elif postgres:
            statement = _BEFORE_CREATE_WITH_END
        row = (await self.session.execute(statement, {
            "account_id": account_id, "key": key, "record_id": record_id,
            **({"chain": chain} if postgres and not locked else {})})).one()
        end: ChainEnd | None = None
        if postgres and not locked:
            end = (0, GENESIS) if row[3] is None else (row[3], row[4])
        return BeforeCreate(row[0], row[1], bool(row[2]), end)

    async def insert(self, *rows: Base) -> None:
        """New rows, in this order, as plain INSERTs (no unit-of-work bookkeeping: the
        create path writes five rows per request)."""
        for row in rows:
            table = cast(Table, row.__table__)
            # The statement has no values of its own (they are parameters): compiled once
            # per table and cached, where ``.values(...)`` would be a new statement to
            # build and key every time.
            await self.session.execute(insert(table), _values(row))

    async def insert_then(self, rows: Sequence[Base], then: Select[Any],
                          params: dict[str, Any]) -> Row[Any] | None:
        """``insert(*rows)``, then ``then`` (with ``params``): its first row. On PostgreSQL
        one statement and one round trip (``_batch``) where it was a statement per row: the
        create path's five rows and its read of the audit chain's end."""
        if not self.postgres:
            await self.insert(*rows)
            return (await self.session.execute(then, params)).first()
        tables = [cast(Table, row.__table__) for row in rows]
        values = dict(params)
        for i, row in enumerate(rows):
            values.update({f"r{i}_{k}": v for k, v in _values(row).items()})
        return (await self.session.execute(_batch(tables, then), values)).first()

    async def insert_sealed(self, rows: Sequence[Base], sealed: Sequence[dict[str, Any]]
                            ) -> bool:
        """PostgreSQL, on an autocommit session: ``rows`` and the audit events ``sealed``
        on a chain end read without its lock (``before_create(locked=False)``), as one
        statement that takes the chain's lock before it writes an event and commits by
        itself (``AuditLog.insert_after_lock``). Two round trips in all for a create,
        where the locked way takes five. False when nothing was written, and the caller
        creates the locked way: another append to the chain came between (the statement
        writes no row, without an error), or a unique key of ``rows`` refused it (a
        concurrent create with this idempotency key or record id: a failed statement,
        rare)."""
        tables = [cast(Table, row.__table__) for row in rows]
        values: dict[str, Any] = {}
        for i, row in enumerate(rows):
            values.update({f"r{i}_{k}": v for k, v in _values(row).items()})
        statement = _batch(tables, AUDIT.insert_after_lock(len(sealed)), after_lock=True)
        return await AUDIT.write_sealed(self.session, sealed, statement, values)

    async def delete_version(self, version: RecordVersion) -> None:
        await self.session.delete(version)

    def add(self, obj: Record | RecordVersion | IdempotencyKey) -> None:
        self.session.add(obj)

    async def forget_idempotency_keys(self, before: datetime) -> int:
        result = await self.session.execute(
            delete(IdempotencyKey).where(IdempotencyKey.created_at < before))
        return int(getattr(result, "rowcount", 0) or 0)


def _values(row: Base) -> dict[str, Any]:
    """Every column of a new row, by column key."""
    return {column.key: getattr(row, column.key)
            for column in cast(Table, row.__table__).columns}
