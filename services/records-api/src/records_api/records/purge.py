"""The purge: ciphertext of long-tombstoned records, orphaned uploads (and resumable upload
sessions left without an append for ``resumable_upload_after_s``), old idempotency keys,
the content directory's trash, and rows a crash left half-written in its ``.incoming``
(older than ``stale_upload_after_s``, and than an hour).

Each record and each batch of orphans is deleted in a short transaction of its own, so the
purge never holds SQLite's write lock for long. One that fails is logged and left for the
next run; the others go on. It is run periodically by the app's
lifespan and can be called directly (tests, an operator's one-off job).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from records_api.models import ContentUpload, Record, RecordVersion, ReplacedWrap
from records_api.records.content import delete_uploads, empty_trash
from records_api.records.content_rows import ContentStoreFailed, FileRows, content_files
from records_api.records.repository import RecordsRepository
from records_api.records.service import now
from records_api.settings import Settings

log = logging.getLogger("ecrin.records-api.purge")
BATCH = 50
#: Rows left half-written in the content directory's ``.incoming`` are swept once at least
#: this old (and older than ``stale_upload_after_s``).
INCOMING_MIN_AGE = timedelta(hours=1)


@dataclass
class PurgeReport:
    records: int = 0
    orphan_uploads: int = 0
    idempotency_keys: int = 0
    #: Rows a crash left half-written in the content directory's ``.incoming``.
    incoming_rows: int = 0
    #: Records and uploads that could not be deleted (logged); the next run tries again.
    failed: int = 0


async def purge(sessionmaker: async_sessionmaker[AsyncSession], settings: Settings, *,
                at: datetime | None = None) -> PurgeReport:
    at = at or now()
    report = PurgeReport()
    files = content_files(settings)
    skipped: set[uuid.UUID] = set()  # failed this run: not selected again
    tombstoned_before = at - timedelta(seconds=settings.purge_after_s)
    while True:
        query = select(Record.id).where(Record.deleted_at.is_not(None),
                                        Record.purged_at.is_(None),
                                        Record.deleted_at <= tombstoned_before)
        if skipped:
            query = query.where(Record.id.not_in(skipped))
        async with sessionmaker() as session, session.begin():
            ids = list((await session.execute(query.limit(BATCH))).scalars())
        if not ids:
            break
        for record_id in ids:
            if await _attempt(_purge_record(sessionmaker, record_id, at, files), files,
                              "record", record_id):
                report.records += 1
            else:
                skipped.add(record_id)
                report.failed += 1
    # An unfinished one-shot upload this old is over (its request, or its process, ended).
    stale_before = at - timedelta(seconds=settings.stale_upload_after_s)
    # A resumable session is abandoned only after the longer delay since its last append.
    abandoned_before = at - timedelta(seconds=settings.resumable_upload_after_s)
    unfinished = and_(ContentUpload.finished_at.is_(None), or_(
        and_(ContentUpload.resumable.is_(False), ContentUpload.started_at <= stale_before),
        and_(ContentUpload.resumable.is_(True),
             func.coalesce(ContentUpload.touched_at, ContentUpload.started_at)
             <= abandoned_before)))
    skipped = set()
    while True:
        query = select(ContentUpload.id).where(unfinished)
        if skipped:
            query = query.where(ContentUpload.id.not_in(skipped))
        async with sessionmaker() as session, session.begin():
            orphans = list((await session.execute(query.limit(BATCH))).scalars())
        if await _attempt(_delete_orphans(sessionmaker, orphans, files), files, "uploads",
                          None):
            report.orphan_uploads += len(orphans)
        else:  # one at a time, to leave only the failing ones
            for upload_id in orphans:
                if await _attempt(_delete_orphans(sessionmaker, [upload_id], files), files,
                                  "upload", upload_id):
                    report.orphan_uploads += 1
                else:
                    skipped.add(upload_id)
                    report.failed += 1
        if len(orphans) < BATCH:
            break
    if files is not None:  # what a crash left in the trash, or half-written
        await asyncio.to_thread(files.empty)
        # At least an hour back: a write whose flush stalled, or a shared volume whose
        # clock runs behind, must not lose its row (the client would have to send it again).
        incoming_before = min(stale_before, at - INCOMING_MIN_AGE)
        try:
            report.incoming_rows = await asyncio.to_thread(
                files.sweep_incoming, incoming_before.timestamp())
        except ContentStoreFailed:  # logged by errno; the next run tries again
            report.failed += 1
    async with sessionmaker() as session, session.begin():
        report.idempotency_keys = await RecordsRepository(session).forget_idempotency_keys(
            at - timedelta(seconds=settings.idempotency_ttl_s))
    return report


async def _attempt(deleting: Awaitable[list[Path]], files: FileRows | None, what: str,
                   item: uuid.UUID | None) -> bool:
    """Run one deletion (its own transaction); empty the trash it filled. A failure is
    logged by its type only (a database error's text can quote the rows' bytes)."""
    try:
        trashed = await deleting
    except Exception as exc:
        log.error("could not purge; left for the next run", extra={
            "item": what, "id": None if item is None else str(item),
            "error": type(exc).__name__})
        return False
    await empty_trash(files, trashed)
    return True


async def _purge_record(sessionmaker: async_sessionmaker[AsyncSession], record_id: uuid.UUID,
                        at: datetime, files: FileRows | None) -> list[Path]:
    async with sessionmaker() as session, session.begin():
        uploads = list((await session.execute(select(ContentUpload.id).where(
            ContentUpload.record_id == record_id))).scalars())
        trashed = await delete_uploads(session, uploads, finished_too=True, files=files)
        # Headers (with the wraps kept from re-keying) and metadata ciphertexts go too; the
        # row stays as a tombstone so that the client-made id is never reused.
        await session.execute(delete(ReplacedWrap).where(ReplacedWrap.record_id == record_id))
        await session.execute(delete(RecordVersion).where(RecordVersion.record_id == record_id))
        await session.execute(update(Record).where(Record.id == record_id)
                              .values(purged_at=at))
    return trashed


async def _delete_orphans(sessionmaker: async_sessionmaker[AsyncSession],
                          upload_ids: list[uuid.UUID], files: FileRows | None) -> list[Path]:
    async with sessionmaker() as session, session.begin():
        return await delete_uploads(session, upload_ids, files=files)


async def purge_forever(sessionmaker: async_sessionmaker[AsyncSession],
                        settings: Settings) -> None:
    """The lifespan's background task: purge every ``purge_interval_s``."""
    while True:
        await asyncio.sleep(settings.purge_interval_s)
        try:
            report = await purge(sessionmaker, settings)
            if (report.records or report.orphan_uploads or report.incoming_rows
                    or report.failed):
                log.info("purged", extra={"records": report.records,
                                          "orphan_uploads": report.orphan_uploads,
                                          "incoming_rows": report.incoming_rows,
                                          "failed": report.failed})
        except Exception:
            log.exception("purge failed; retrying at the next interval")
