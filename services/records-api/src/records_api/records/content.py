"""Content ciphertext in database rows of at most 1 MiB, streamed in and out.

Uploads never hold one transaction for the whole body: each 1 MiB row is written in a
short transaction of its own under a fresh *upload id*, while the version stays
uncommitted and invisible. Only when the body is complete (length and content digest as
the header says) does one short transaction let the version adopt the upload and become
committed. On SQLite, where a writer holds the database's only write lock, other writers
therefore wait for one row at a time, never for a whole 200 MiB upload. An upload that
fails is deleted at once; one cut short by a crash is an orphan the purge removes.

A *resumable* upload session (``records.resumable``) keeps its rows when a request is cut:
its offset is the bytes of its stored rows, so a client resumes from the last whole row.

Downloads read one row per short read-only transaction, so memory stays bounded and no
connection is held while a slow client drains the response.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, func, insert, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from ecrin_platform.db import read_only_session
from ecrin_platform.problems import ServiceError
from records_api.models import ContentChunk, ContentUpload
from records_api.records.header import CONTENT_DIGEST_PREFIX

log = logging.getLogger("ecrin.records-api.content")

#: Bytes of ciphertext per database row.
CONTENT_ROW_BYTES = 1 << 20
#: Resumable sessions whose running digest one process keeps (about 200 bytes each).
RUNNING_DIGESTS = 4096


def row_count(content_length: int) -> int:
    return -(-content_length // CONTENT_ROW_BYTES)


class ContentTooLong(Exception):
    """The body went past the length the header announces."""


class RowTaken(Exception):
    """Another request stored this row first (two appends to one session at once)."""


class PieceMisaligned(Exception):
    """A piece that does not complete the upload ended inside a row; the whole rows before
    it are kept (``stored`` bytes)."""

    def __init__(self, stored: int) -> None:
        super().__init__(stored)
        self.stored = stored


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

    @classmethod
    async def reread(cls, store: ContentStore, upload_id: uuid.UUID,
                     length: int) -> ReceivedContent:
        """What a resumable upload holds, hashed by reading its rows back one at a time: a
        hash state does not outlive the request that fed it, and the pieces came in several.
        Raises :class:`ContentMissing` if a row is missing or not of its expected size."""
        received = cls(upload_id)
        async for data in store.stream(upload_id, length):
            received.update(data)
        return received



async def _write_rows(body: AsyncIterator[bytes], seq: int,
                      write: Callable[[int, bytes], Awaitable[None]],
                      took: Callable[[bytes], None]) -> tuple[bytearray, int]:
    """Reads ``body`` and writes each whole row as it fills (``write(seq, row)``, from
    ``seq`` on), in order, one row in flight while the next MiB arrives: at most two rows
    and a piece in memory, each row copied once out of the buffer. ``took(piece)`` sees
    every piece first and may raise. Returns the partial row left over and its seq; the
    row in flight has ended (written or failed) before this returns or raises."""
    buffer = bytearray()
    writing: asyncio.Task[None] | None = None
    try:
        async for piece in body:
            if not piece:
                continue
            took(piece)
            buffer += piece
            if len(buffer) < CONTENT_ROW_BYTES:
                continue
            start = 0
            while len(buffer) - start >= CONTENT_ROW_BYTES:
                with memoryview(buffer) as view:
                    row = view[start:start + CONTENT_ROW_BYTES].tobytes()
                start += CONTENT_ROW_BYTES
                if writing is not None:
                    await writing
                writing = asyncio.ensure_future(write(seq, row))
                seq += 1
            del buffer[:start]
        if writing is not None:
            await writing
            writing = None
    except BaseException:
        if writing is not None:  # the row being written ends (or fails) first
            with contextlib.suppress(BaseException):
                await writing
        raise
    return buffer, seq

class ContentStore:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession],
                 engine: AsyncEngine) -> None:
        self.sessionmaker = sessionmaker
        self.engine = engine
        #: Resumable sessions' running digests: upload id -> (rows hashed, hash of them).
        #: Only a hint for this process (another replica, a restart, a row lost or written
        #: out of turn: the completion reads the rows back instead), so bounded and dropped
        #: oldest first.
        self._running: OrderedDict[uuid.UUID, tuple[int, Any]] = OrderedDict()

    async def receive(self, body: AsyncIterator[bytes], *, record_id: uuid.UUID, version: int,
                      account_id: uuid.UUID, max_length: int) -> ReceivedContent:
        """Write ``body`` as rows of a new upload. Raises :class:`ContentTooLong` past
        ``max_length``; on any failure the rows written so far are deleted."""
        upload_id = uuid.uuid4()
        async with self.sessionmaker() as session, session.begin():
            session.add(ContentUpload(id=upload_id, record_id=record_id, version=version,
                                      account_id=account_id, started_at=datetime.now(UTC)))
        received = ReceivedContent(upload_id)

        def took(piece: bytes) -> None:
            received.update(piece)
            if received.length > max_length:
                raise ContentTooLong()

        try:
            rest, seq = await _write_rows(
                body, 0, functools.partial(self._write_row, upload_id), took)
            if rest:
                await self._write_row(upload_id, seq, bytes(rest))
        except BaseException:
            await self.discard_quietly(upload_id)
            raise
        return received

    # --- resumable sessions (records.resumable) ---------------------------------------

    async def open_session(self, *, record_id: uuid.UUID, version: int,
                           account_id: uuid.UUID) -> uuid.UUID:
        """A new resumable upload of a version's content by ``account_id``. The account's
        earlier unfinished sessions of that version go: one live session per version and
        account bounds what abandoned ones hold until the purge."""
        upload_id = uuid.uuid4()
        at = datetime.now(UTC)
        async with self.sessionmaker() as session, session.begin():
            earlier = list((await session.execute(select(ContentUpload.id).where(
                ContentUpload.record_id == record_id, ContentUpload.version == version,
                ContentUpload.account_id == account_id, ContentUpload.resumable.is_(True),
                ContentUpload.finished_at.is_(None)))).scalars())
            await delete_uploads(session, earlier)
            session.add(ContentUpload(id=upload_id, record_id=record_id, version=version,
                                      account_id=account_id, started_at=at, resumable=True,
                                      touched_at=at))
        return upload_id

    async def session(self, upload_id: uuid.UUID) -> ContentUpload | None:
        async with read_only_session(self.engine) as session:
            return await session.get(ContentUpload, upload_id)

    async def stored(self, upload_id: uuid.UUID) -> int:
        """Bytes a session holds: its rows, each written whole in a transaction of its own
        (the part of a row a cut request was still buffering is not stored)."""
        async with read_only_session(self.engine) as session:
            total = await session.scalar(
                select(func.coalesce(func.sum(func.length(ContentChunk.data)), 0))
                .where(ContentChunk.upload_id == upload_id))
        return int(total or 0)

    async def touch(self, upload_id: uuid.UUID) -> None:
        async with self.sessionmaker() as session, session.begin():
            await session.execute(update(ContentUpload).where(ContentUpload.id == upload_id)
                                  .values(touched_at=datetime.now(UTC)))

    async def append(self, upload_id: uuid.UUID, body: AsyncIterator[bytes], *, offset: int,
                     length: int, final: bool) -> int:
        """Store ``body`` as the rows that follow ``offset`` (a whole number of rows); the
        bytes stored after it. Raises :class:`ContentTooLong` past ``length``,
        :class:`PieceMisaligned` when a piece that is not ``final`` ends inside a row,
        :class:`RowTaken` when another request stored a row first. Rows stored stay on any
        failure (a cut connection loses only the row it was buffering)."""
        if offset % CONTENT_ROW_BYTES:
            # Only the last row is ever partial (stored by a completion cut before its
            # commit): nothing may follow it.
            async for piece in body:
                if piece:
                    raise ContentTooLong()
            return offset
        total = offset

        def took(piece: bytes) -> None:
            nonlocal total
            total += len(piece)
            if total > length:
                raise ContentTooLong()

        # The row in flight has ended when this returns or raises: what the session holds
        # is settled when the request's answer goes out.
        rest, seq = await _write_rows(body, offset // CONTENT_ROW_BYTES,
                                      functools.partial(self._append_row, upload_id), took)
        if rest:
            if not final:
                raise PieceMisaligned(seq * CONTENT_ROW_BYTES)
            await self._append_row(upload_id, seq, bytes(rest))
        return total

    async def _append_row(self, upload_id: uuid.UUID, seq: int, data: bytes) -> None:
        try:
            await self._write_row(upload_id, seq, data)
        except IntegrityError:
            self._running.pop(upload_id, None)
            raise RowTaken() from None
        self._hash_row(upload_id, seq, data)

    def _hash_row(self, upload_id: uuid.UUID, seq: int, data: bytes) -> None:
        """Extend the session's running digest with the row just stored, if it is the row
        that follows the ones hashed; anything else forgets the digest."""
        rows, hashed = self._running.pop(upload_id, (0, None))
        if seq != rows:
            return
        if hashed is None:
            hashed = hashlib.sha256(CONTENT_DIGEST_PREFIX)
        hashed.update(data)
        self._running[upload_id] = (rows + 1, hashed)
        while len(self._running) > RUNNING_DIGESTS:
            self._running.popitem(last=False)

    async def completed(self, upload_id: uuid.UUID, length: int) -> ReceivedContent:
        """What a resumable session holds once whole: its running digest when this process
        hashed every row in turn, else (another replica, a restart) the rows read back."""
        rows, hashed = self._running.pop(upload_id, (0, None))
        if hashed is not None and rows == row_count(length):
            received = ReceivedContent(upload_id)
            received.length, received._hash = length, hashed
            return received
        return await ReceivedContent.reread(self, upload_id, length)

    async def _write_row(self, upload_id: uuid.UUID, seq: int, data: bytes) -> None:
        # A Core connection, not an ORM session: one INSERT needs no unit of work, and a
        # 100 MiB upload writes a hundred of these (same engine, same BEGIN IMMEDIATE on
        # SQLite).
        async with self.engine.begin() as conn:
            if self.engine.dialect.name == "postgresql":
                # A row's commit does not wait for its WAL flush: the version's own commit
                # (synchronous) flushes the WAL up to it, every row before it included. A
                # crash before that loses rows of an upload that was never committed.
                await conn.execute(text("SET LOCAL synchronous_commit = off"))
            await conn.execute(insert(ContentChunk).values(upload_id=upload_id, seq=seq,
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

        async def read(seq: int) -> bytes:
            async with read_only_session(self.engine) as session:
                data = await session.scalar(select(ContentChunk.data).where(
                    ContentChunk.upload_id == upload_id, ContentChunk.seq == seq))
            expected = min(CONTENT_ROW_BYTES, content_length - seq * CONTENT_ROW_BYTES)
            if data is None or len(data) != expected:
                log.error("content row missing or altered", extra={"upload_id": str(upload_id),
                                                                   "seq": seq})
                raise ContentMissing()
            return bytes(data)

        # The next row is read while this one is sent (at most two rows in memory).
        ahead: asyncio.Task[bytes] | None = asyncio.ensure_future(read(0)) if rows else None
        try:
            for seq in range(rows):
                assert ahead is not None
                data = await ahead
                ahead = asyncio.ensure_future(read(seq + 1)) if seq + 1 < rows else None
                yield data
                del data
        finally:
            if ahead is not None:  # the client left, or a row was missing
                ahead.cancel()
                ahead.add_done_callback(_retrieved)


def _retrieved(task: asyncio.Task[bytes]) -> None:
    """A read ahead nobody will await: its outcome is dropped without a warning."""
    if not task.cancelled():
        task.exception()


async def delete_uploads(session: AsyncSession, upload_ids: list[uuid.UUID], *,
                         finished_too: bool = False) -> None:
    """Delete these uploads and their rows, in the caller's transaction. Only unfinished
    ones unless ``finished_too`` (a purged record): an upload a version adopted is that
    version's content, whatever a concurrent request (a second completion, a cancel, a
    failed piece, the purge) decided before the commit. On PostgreSQL the uploads are
    locked first, so a commit in progress either finishes before (and the upload is kept)
    or finds it gone (``commit_upload`` refuses); SQLite writers are serialised anyway."""
    if not upload_ids:
        return
    if not finished_too:
        query = select(ContentUpload.id).where(ContentUpload.id.in_(upload_ids),
                                               ContentUpload.finished_at.is_(None))
        if session.bind is not None and session.bind.dialect.name == "postgresql":
            query = query.with_for_update()
        upload_ids = list((await session.execute(query)).scalars())
        if not upload_ids:
            return
    await session.execute(delete(ContentChunk).where(ContentChunk.upload_id.in_(upload_ids)))
    await session.execute(delete(ContentUpload).where(ContentUpload.id.in_(upload_ids)))
