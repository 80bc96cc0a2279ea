"""Content ciphertext in database rows of at most 1 MiB, streamed in and out.

Uploads never hold one transaction for the whole body: each 1 MiB row is written in a
short transaction of its own under a fresh *upload id*, while the version stays
uncommitted and invisible. Only when the body is complete (length and content digest as
the header says) does one short transaction let the version adopt the upload and become
committed. On SQLite, where a writer holds the database's only write lock, other writers
therefore wait for one row at a time, never for a whole 200 MiB upload. An upload that
fails is deleted at once; one cut short by a crash is an orphan the purge removes.

Downloads read one row per short read-only transaction, so memory stays bounded and no
connection is held while a slow client drains the response.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

from sqlalchemy import delete, func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from ecrin_platform.db import read_only_session
from ecrin_platform.problems import ServiceError
from records_api.models import ContentChunk, ContentUpload
from records_api.records.header import CONTENT_DIGEST_PREFIX

log = logging.getLogger("ecrin.records-api.content")

#: Bytes of ciphertext per database row.
CONTENT_ROW_BYTES = 1 << 20


def row_count(content_length: int) -> int:
    return -(-content_length // CONTENT_ROW_BYTES)


class ContentTooLong(Exception):
    """The body went past the length the header announces."""


class ContentMissing(Exception):
    """A row of a committed upload is gone (purged while being read, or tampered with)."""


class ContentUnavailable(ServiceError):
    """Found before the response starts: the stored ciphertext is incomplete."""

    status, slug, title = 503, "content-unavailable", "Content unavailable"

    def __init__(self) -> None:
        super().__init__("The stored content of this version is incomplete.",
                         headers={"Retry-After": "30"})


def content_digest(data: bytes) -> bytes:
    """The digest a header names for this whole content ciphertext."""
    return hashlib.sha256(CONTENT_DIGEST_PREFIX + data).digest()


class ReceivedContent:
    """What an upload wrote: its id, its length and the digest the header must carry."""

    def __init__(self, upload_id: uuid.UUID) -> None:
        self.upload_id = upload_id
        self.length = 0
        self._hash = hashlib.sha256(CONTENT_DIGEST_PREFIX)

    def update(self, data: bytes) -> None:
        self.length += len(data)
        self._hash.update(data)

    @property
    def digest(self) -> bytes:
        return self._hash.digest()


class ContentStore:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession],
                 engine: AsyncEngine) -> None:
        self.sessionmaker = sessionmaker
        self.engine = engine

    async def receive(self, body: AsyncIterator[bytes], *, record_id: uuid.UUID, version: int,
                      account_id: uuid.UUID, max_length: int) -> ReceivedContent:
        """Write ``body`` as rows of a new upload. Raises :class:`ContentTooLong` past
        ``max_length``; on any failure the rows written so far are deleted."""
        upload_id = uuid.uuid4()
        async with self.sessionmaker() as session, session.begin():
            session.add(ContentUpload(id=upload_id, record_id=record_id, version=version,
                                      account_id=account_id, started_at=datetime.now(UTC)))
        received = ReceivedContent(upload_id)
        buffer = bytearray()
        seq = 0
        try:
            async for piece in body:
                if not piece:
                    continue
                received.update(piece)
                if received.length > max_length:
                    raise ContentTooLong()
                buffer += piece
                while len(buffer) >= CONTENT_ROW_BYTES:
                    await self._write_row(upload_id, seq, bytes(buffer[:CONTENT_ROW_BYTES]))
                    del buffer[:CONTENT_ROW_BYTES]
                    seq += 1
            if buffer:
                await self._write_row(upload_id, seq, bytes(buffer))
                buffer.clear()
        except BaseException:
            await self.discard_quietly(upload_id)
            raise
        return received

    async def _write_row(self, upload_id: uuid.UUID, seq: int, data: bytes) -> None:
        async with self.sessionmaker() as session, session.begin():
            await session.execute(insert(ContentChunk).values(upload_id=upload_id, seq=seq,
                                                              data=data))

    async def discard(self, upload_id: uuid.UUID) -> None:
        async with self.sessionmaker() as session, session.begin():
            await delete_uploads(session, [upload_id])

    async def discard_quietly(self, upload_id: uuid.UUID) -> None:
        """Best effort, even while the request is being cancelled; the purge catches the
        rest (an unfinished upload older than ``stale_upload_after_s``)."""
        try:
            await asyncio.shield(self.discard(upload_id))
        except Exception:
            log.warning("could not discard a failed upload; the purge will",
                        extra={"upload_id": str(upload_id)})

    async def check_complete(self, upload_id: uuid.UUID, content_length: int) -> None:
        """Before a download starts: every row is there with its full size. A row lost or
        cut would otherwise surface only mid-stream, after a 200 had been sent."""
        async with read_only_session(self.engine) as session:
            count, total = (await session.execute(
                select(func.count(), func.coalesce(func.sum(func.length(ContentChunk.data)), 0))
                .where(ContentChunk.upload_id == upload_id))).one()
        if count != row_count(content_length) or total != content_length:
            log.error("content rows missing or altered", extra={"upload_id": str(upload_id)})
            raise ContentUnavailable()

    async def stream(self, upload_id: uuid.UUID, content_length: int) -> AsyncIterator[bytes]:
        """The content of a committed upload, one row per read transaction."""
        rows = row_count(content_length)
        for seq in range(rows):
            async with read_only_session(self.engine) as session:
                data = await session.scalar(select(ContentChunk.data).where(
                    ContentChunk.upload_id == upload_id, ContentChunk.seq == seq))
            expected = min(CONTENT_ROW_BYTES, content_length - seq * CONTENT_ROW_BYTES)
            if data is None or len(data) != expected:
                log.error("content row missing or altered", extra={"upload_id": str(upload_id),
                                                                   "seq": seq})
                raise ContentMissing()
            yield bytes(data)
            del data


async def delete_uploads(session: AsyncSession, upload_ids: list[uuid.UUID]) -> None:
    if not upload_ids:
        return
    await session.execute(delete(ContentChunk).where(ContentChunk.upload_id.in_(upload_ids)))
    await session.execute(delete(ContentUpload).where(ContentUpload.id.in_(upload_ids)))
