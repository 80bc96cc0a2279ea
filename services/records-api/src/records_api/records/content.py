"""Content ciphertext in rows of at most 1 MiB, streamed in and out.

Uploads never hold one transaction for the whole body: each 1 MiB row is written in a
short transaction of its own under a fresh *upload id*, while the version stays
uncommitted and invisible. Only when the body is complete (length and content digest as
the header says) does one short transaction let the version adopt the upload and become
committed. On SQLite, where a writer holds the database's only write lock, other writers
therefore wait for one row at a time, never for a whole 200 MiB upload. An upload that
fails is deleted at once; one cut short by a crash is an orphan the purge removes.

A *resumable* upload session (``records.resumable``) keeps its rows when a request is cut:
its offset is the bytes of its stored rows, so a client resumes from the last whole row.

Downloads read one row at a time (on the database, in a short read-only transaction), so
memory stays bounded and no connection is held while a slow client drains the response.

The rows of an upload are kept in the database or, for content too large to be read
inline, as files under the content directory when one is set (``records.content_rows``);
the upload says which (``in_files``), so content stored before the directory was set is
still read from the database.
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
from pathlib import Path
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from ecrin_platform.db import read_only_session
from ecrin_platform.problems import ServiceError
from records_api.models import ContentChunk, ContentUpload
from records_api.records.content_rows import DatabaseRows, FileRows, RowTaken
from records_api.records.header import CONTENT_DIGEST_PREFIX
from records_api.records.schemas import INLINE_CONTENT_MAX

log = logging.getLogger("ecrin.records-api.content")

#: Bytes of ciphertext per row (a database row or a file).
CONTENT_ROW_BYTES = 1 << 20
#: Where an upload's rows are kept.
Rows = DatabaseRows | FileRows
#: Resumable sessions whose running digest one process keeps (about 200 bytes each).
RUNNING_DIGESTS = 4096


def row_count(content_length: int) -> int:
    return -(-content_length // CONTENT_ROW_BYTES)


class ContentTooLong(Exception):
    """The body went past the length the header announces."""


class PieceMisaligned(Exception):
    """A piece that does not complete the upload ended inside a row; the whole rows before
    it are kept (``stored`` bytes)."""

    def __init__(self, stored: int) -> None:
        super().__init__(stored)
        self.stored = stored


class ContentDirectoryMissing(ServiceError):
    """Uploads are kept in files, and this process was given no content directory: the
    content is not lost, this replica cannot reach it (as ``ContentStoreFailed``)."""

    status, slug, title = 503, "content-store-unavailable", "Content store unavailable"

    def __init__(self, upload_ids: list[uuid.UUID]) -> None:
        log.error("content kept in files but no content directory is set",
                  extra={"upload_ids": [str(upload_id) for upload_id in upload_ids]})
        super().__init__("The stored content cannot be reached right now.",
                         headers={"Retry-After": "30"})


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

    def __init__(self, upload_id: uuid.UUID, rows: Rows) -> None:
        self.upload_id = upload_id
        self.length = 0
        #: Where its rows are.
        self.rows = rows
        self._hash = hashlib.sha256(CONTENT_DIGEST_PREFIX)

    async def missing(self) -> bool:
        """Checked by the commit once it holds the upload: rows kept in files are all
        there. A discard moves the folder away before its own commit; if that commit then
        failed, the upload is still unfinished but has no rows left. (Database rows go
        with their upload, in one transaction.)"""
        if not isinstance(self.rows, FileRows):
            return False
        count, total = await self.rows.tally(self.upload_id)
        return count != row_count(self.length) or total != self.length

    def update(self, data: bytes) -> None:
        self.length += len(data)
        self._hash.update(data)

    @property
    def digest(self) -> bytes:
        return self._hash.digest()

    @classmethod
    async def reread(cls, store: ContentStore, upload: ContentUpload,
                     length: int) -> ReceivedContent:
        """What a resumable upload holds, hashed by reading its rows back one at a time: a
        hash state does not outlive the request that fed it, and the pieces came in several.
        Raises :class:`ContentMissing` if a row is missing or not of its expected size."""
        received = cls(upload.id, store.rows(upload))
        async for data in store.stream(upload.id, length, received.rows):
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
                 engine: AsyncEngine, files: FileRows | None = None) -> None:
        self.sessionmaker = sessionmaker
        self.engine = engine
        self.database = DatabaseRows(engine)
        #: The content directory's rows, when one is set.
        self.files = files
        #: Resumable sessions' running digests: upload id -> (rows hashed, hash of them).
        #: Only a hint for this process (another replica, a restart, a row lost or written
        #: out of turn: the completion reads the rows back instead), so bounded and dropped
        #: oldest first.
        self._running: OrderedDict[uuid.UUID, tuple[int, Any]] = OrderedDict()

    def _in_files(self, content_length: int) -> bool:
        """Whether a new upload of this length goes to files: only with a content directory,
        and only content too large to be read inline (a small version's content is read
        with it, from the database, in one request)."""
        return self.files is not None and content_length > INLINE_CONTENT_MAX

    def rows(self, upload: ContentUpload) -> Rows:
        return self._rows(upload.id, in_files=upload.in_files)

    async def directory_problem(self) -> str | None:
        """For ``/readyz``: what is wrong when uploads are kept in files and this process
        has no content directory (a replica started without ``ECRIN_RECORDS_CONTENT_DIR``);
        such a process is not ready. One query on a partial index, and none with a
        directory."""
        if self.files is not None:
            return None
        async with read_only_session(self.engine) as session:
            kept = await session.scalar(select(ContentUpload.id).where(
                ContentUpload.in_files).limit(1))
        if kept is None:
            return None
        return "Content is kept in files and ECRIN_RECORDS_CONTENT_DIR is not set."

    def _rows(self, upload_id: uuid.UUID, *, in_files: bool) -> Rows:
        if not in_files:
            return self.database
        if self.files is None:
            raise ContentDirectoryMissing([upload_id])
        return self.files

    async def _new_upload(self, upload: ContentUpload) -> Rows:
        rows = self.rows(upload)
        if isinstance(rows, FileRows):
            await rows.create(upload.id)  # first: a folder exists only for an upload
        trashed: list[Path] = []
        try:
            async with self.sessionmaker() as session, session.begin():
                if upload.resumable:
                    # The account's earlier unfinished sessions of that version go: one
                    # live session per version and account bounds what abandoned ones hold
                    # until the purge.
                    earlier = list((await session.execute(select(ContentUpload.id).where(
                        ContentUpload.record_id == upload.record_id,
                        ContentUpload.version == upload.version,
                        ContentUpload.account_id == upload.account_id,
                        ContentUpload.resumable.is_(True),
                        ContentUpload.finished_at.is_(None)))).scalars())
                    trashed = await delete_uploads(session, earlier, files=self.files)
                session.add(upload)
        except BaseException:
            if isinstance(rows, FileRows):
                trashed += await asyncio.to_thread(rows.discard, [upload.id])
            raise
        finally:
            await empty_trash(self.files, trashed)
        return rows

    async def receive(self, body: AsyncIterator[bytes], *, record_id: uuid.UUID, version: int,
                      account_id: uuid.UUID, max_length: int) -> ReceivedContent:
        """Write ``body`` as rows of a new upload. Raises :class:`ContentTooLong` past
        ``max_length``; on any failure the rows written so far are deleted."""
        upload = ContentUpload(id=uuid.uuid4(), record_id=record_id, version=version,
                               account_id=account_id, started_at=datetime.now(UTC),
                               in_files=self._in_files(max_length))
        rows = await self._new_upload(upload)
        received = ReceivedContent(upload.id, rows)

        def took(piece: bytes) -> None:
            received.update(piece)
            if received.length > max_length:
                raise ContentTooLong()

        try:
            rest, seq = await _write_rows(
                body, 0, functools.partial(rows.write, upload.id), took)
            if rest:
                await rows.write(upload.id, seq, bytes(rest))
            await rows.sync(upload.id)
        except BaseException:
            await self.discard_quietly(upload.id)
            raise
        return received

    # --- resumable sessions (records.resumable) ---------------------------------------

    async def open_session(self, *, record_id: uuid.UUID, version: int,
                           account_id: uuid.UUID, content_length: int) -> uuid.UUID:
        """A new resumable upload of a version's content (``content_length`` bytes) by
        ``account_id``. The account's earlier unfinished sessions of that version go."""
        at = datetime.now(UTC)
        upload = ContentUpload(id=uuid.uuid4(), record_id=record_id, version=version,
                               account_id=account_id, started_at=at, resumable=True,
                               touched_at=at, in_files=self._in_files(content_length))
        await self._new_upload(upload)
        return upload.id

    async def session(self, upload_id: uuid.UUID) -> ContentUpload | None:
        async with read_only_session(self.engine) as session:
            return await session.get(ContentUpload, upload_id)

    async def stored(self, upload: ContentUpload) -> int:
        """Bytes a session holds: its rows, each written whole (the part of a row a cut
        request was still buffering is not stored)."""
        return (await self.rows(upload).tally(upload.id))[1]

    async def touch(self, upload_id: uuid.UUID) -> None:
        async with self.sessionmaker() as session, session.begin():
            await session.execute(update(ContentUpload).where(ContentUpload.id == upload_id)
                                  .values(touched_at=datetime.now(UTC)))

    async def append(self, upload: ContentUpload, body: AsyncIterator[bytes], *, offset: int,
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
        write = functools.partial(self._append_row, self.rows(upload), upload.id)

        def took(piece: bytes) -> None:
            nonlocal total
            total += len(piece)
            if total > length:
                raise ContentTooLong()

        # The row in flight has ended when this returns or raises: what the session holds
        # is settled when the request's answer goes out.
        rest, seq = await _write_rows(body, offset // CONTENT_ROW_BYTES, write, took)
        if rest:
            if not final:
                raise PieceMisaligned(seq * CONTENT_ROW_BYTES)
            await write(seq, bytes(rest))
        return total

    async def _append_row(self, rows: Rows, upload_id: uuid.UUID, seq: int,
                          data: bytes) -> None:
        try:
            await rows.write(upload_id, seq, data)
        except RowTaken:
            self._running.pop(upload_id, None)
            raise
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

    async def completed(self, upload: ContentUpload, length: int) -> ReceivedContent:
        """What a resumable session holds once whole: its running digest when this process
        hashed every row in turn, else (another replica, a restart) the rows read back.
        The rows are on disk when this returns."""
        hashed_rows, hashed = self._running.pop(upload.id, (0, None))
        rows = self.rows(upload)
        await rows.sync(upload.id)
        if hashed is not None and hashed_rows == row_count(length):
            received = ReceivedContent(upload.id, rows)
            received.length, received._hash = length, hashed
            return received
        return await ReceivedContent.reread(self, upload, length)

    async def discard(self, upload_id: uuid.UUID) -> None:
        trashed: list[Path] = []
        try:
            async with self.sessionmaker() as session, session.begin():
                trashed = await delete_uploads(session, [upload_id], files=self.files)
        finally:
            await empty_trash(self.files, trashed)

    async def discard_quietly(self, upload_id: uuid.UUID) -> None:
        """Best effort, even while the request is being cancelled; the purge catches the
        rest (an unfinished upload older than ``stale_upload_after_s``)."""
        try:
            await asyncio.shield(self.discard(upload_id))
        except Exception:
            log.warning("could not discard a failed upload; the purge will",
                        extra={"upload_id": str(upload_id)})

    async def check_complete(self, upload_id: uuid.UUID, content_length: int) -> Rows:
        """Before a download starts: every row is there with its full size, and where. A
        row lost or cut would otherwise surface only mid-stream, after a 200 had been
        sent."""
        async with read_only_session(self.engine) as session:
            in_files = await session.scalar(select(ContentUpload.in_files).where(
                ContentUpload.id == upload_id))
        if in_files is None:
            log.error("content upload missing", extra={"upload_id": str(upload_id)})
            raise ContentUnavailable()
        rows = self._rows(upload_id, in_files=in_files)
        count, total = await rows.tally(upload_id)
        if count != row_count(content_length) or total != content_length:
            log.error("content rows missing or altered", extra={"upload_id": str(upload_id)})
            raise ContentUnavailable()
        return rows

    async def stream(self, upload_id: uuid.UUID, content_length: int,
                     rows: Rows) -> AsyncIterator[bytes]:
        """The content of a committed upload, one row at a time, from ``rows``."""
        count = row_count(content_length)

        async def read(seq: int) -> bytes:
            data = await rows.read(upload_id, seq)
            expected = min(CONTENT_ROW_BYTES, content_length - seq * CONTENT_ROW_BYTES)
            if data is None or len(data) != expected:
                log.error("content row missing or altered", extra={"upload_id": str(upload_id),
                                                                   "seq": seq})
                raise ContentMissing()
            return data

        # The next row is read while this one is sent (at most two rows in memory).
        ahead: asyncio.Task[bytes] | None = asyncio.ensure_future(read(0)) if count else None
        try:
            for seq in range(count):
                assert ahead is not None
                data = await ahead
                ahead = asyncio.ensure_future(read(seq + 1)) if seq + 1 < count else None
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
                         finished_too: bool = False, files: FileRows | None) -> list[Path]:
    """Delete these uploads and their rows, in the caller's transaction. Only unfinished
    ones unless ``finished_too`` (a purged record): an upload a version adopted is that
    version's content, whatever a concurrent request (a second completion, a cancel, a
    failed piece, the purge) decided before the commit. On PostgreSQL the uploads are
    locked first, so a commit in progress either finishes before (and the upload is kept)
    or finds it gone (``commit_upload`` refuses); SQLite writers are serialised anyway.

    The folders of rows kept in ``files`` are moved to its trash first (``FileRows``):
    returned, for the caller to empty once the transaction is over (whatever its outcome).
    Raises :class:`ContentDirectoryMissing` (deleting nothing) for uploads kept in files
    when ``files`` is None."""
    if not upload_ids:
        return []
    query = select(ContentUpload.id, ContentUpload.in_files).where(
        ContentUpload.id.in_(upload_ids))
    if not finished_too:
        query = query.where(ContentUpload.finished_at.is_(None))
        if session.bind is not None and session.bind.dialect.name == "postgresql":
            query = query.with_for_update()
    found = (await session.execute(query)).all()
    upload_ids = [upload_id for upload_id, _ in found]
    if not upload_ids:
        return []
    in_files = [upload_id for upload_id, kept_in_files in found if kept_in_files]
    trashed: list[Path] = []
    if in_files:
        if files is None:
            raise ContentDirectoryMissing(in_files)
        trashed = await asyncio.to_thread(files.discard, in_files)
    await session.execute(delete(ContentChunk).where(ContentChunk.upload_id.in_(upload_ids)))
    await session.execute(delete(ContentUpload).where(ContentUpload.id.in_(upload_ids)))
    return trashed


async def empty_trash(files: FileRows | None, trashed: list[Path]) -> None:
    """Once the transaction that ran ``delete_uploads`` is over, whatever its outcome:
    remove the folders it moved to the trash."""
    if trashed and files is not None:
        await asyncio.to_thread(files.empty, trashed)
