"""The purge: ciphertext of long-tombstoned records, orphaned uploads (and resumable upload
sessions left without an append for ``resumable_upload_after_s``), old idempotency keys.

Each record and each batch of orphans is deleted in a short transaction of its own, so the
purge never holds SQLite's write lock for long. It is run periodically by the app's
lifespan and can be called directly (tests, an operator's one-off job).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from records_api.models import ContentUpload, Record, RecordVersion, ReplacedWrap
from records_api.records.content import delete_uploads
from records_api.records.content_rows import content_files
from records_api.records.repository import RecordsRepository
from records_api.records.service import now
from records_api.settings import Settings

log = logging.getLogger("ecrin.records-api.purge")
BATCH = 50


@dataclass
class PurgeReport:
    records: int = 0
    orphan_uploads: int = 0
    idempotency_keys: int = 0


async def purge(sessionmaker: async_sessionmaker[AsyncSession], settings: Settings, *,
                at: datetime | None = None) -> PurgeReport:
    at = at or now()
    report = PurgeReport()
    files = content_files(settings)
    tombstoned_before = at - timedelta(seconds=settings.purge_after_s)
    while True:
        async with sessionmaker() as session, session.begin():
            ids = list((await session.execute(
                select(Record.id).where(Record.deleted_at.is_not(None),
                                        Record.purged_at.is_(None),
                                        Record.deleted_at <= tombstoned_before)
                .limit(BATCH))).scalars())
        if not ids:
            break
        for record_id in ids:
            async with sessionmaker() as session, session.begin():
                uploads = list((await session.execute(select(ContentUpload.id).where(
                    ContentUpload.record_id == record_id))).scalars())
                await delete_uploads(session, uploads, finished_too=True, files=files)
                # Headers (with the wraps kept from re-keying) and metadata ciphertexts go
                # too; the row stays as a tombstone so that the client-made id is never
                # reused.
                await session.execute(delete(ReplacedWrap).where(
                    ReplacedWrap.record_id == record_id))
                await session.execute(delete(RecordVersion).where(
                    RecordVersion.record_id == record_id))
                await session.execute(update(Record).where(Record.id == record_id)
                                      .values(purged_at=at))
            report.records += 1
    stale_before = at - timedelta(seconds=settings.stale_upload_after_s)
    # A resumable session is abandoned only after the longer delay since its last append.
    abandoned_before = at - timedelta(seconds=settings.resumable_upload_after_s)
    unfinished = or_(
        and_(ContentUpload.resumable.is_(False), ContentUpload.started_at <= stale_before),
        and_(ContentUpload.resumable.is_(True),
             func.coalesce(ContentUpload.touched_at, ContentUpload.started_at)
             <= abandoned_before))
    while True:
        async with sessionmaker() as session, session.begin():
            orphans = list((await session.execute(
                select(ContentUpload.id).where(ContentUpload.finished_at.is_(None), unfinished)
                .limit(BATCH))).scalars())
            await delete_uploads(session, orphans, files=files)
        report.orphan_uploads += len(orphans)
        if len(orphans) < BATCH:
            break
    async with sessionmaker() as session, session.begin():
        report.idempotency_keys = await RecordsRepository(session).forget_idempotency_keys(
            at - timedelta(seconds=settings.idempotency_ttl_s))
    return report


async def purge_forever(sessionmaker: async_sessionmaker[AsyncSession],
                        settings: Settings) -> None:
    """The lifespan's background task: purge every ``purge_interval_s``."""
    while True:
        await asyncio.sleep(settings.purge_interval_s)
        try:
            report = await purge(sessionmaker, settings)
            if report.records or report.orphan_uploads:
                log.info("purged", extra={"records": report.records,
                                          "orphan_uploads": report.orphan_uploads})
        except Exception:
            log.exception("purge failed; retrying at the next interval")
