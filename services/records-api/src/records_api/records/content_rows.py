"""Where the rows of a content upload are kept: in the database (``content_chunks``) or as
files under the records API's content directory (``ECRIN_RECORDS_CONTENT_DIR``).

Both hold the same thing, rows of at most 1 MiB of ciphertext numbered from 0, and keep the
same promises: a row is stored whole or not at all, a row number is stored once (a second
writer is told :class:`RowTaken`), and what an upload holds is the count and total length of
its rows. The database does about 100 MiB/s of 1 MiB rows on either backend (TOAST and WAL
on PostgreSQL, the WAL then its checkpoint on SQLite); a file is written at the disk's
speed, so large documents go to files when a directory is set (docs/performance.md).

A file row is written to a temporary name in ``<root>/.incoming``, flushed to disk, then
hard-linked to its number in the upload's folder (the link fails if the number exists), so a
crash leaves either no row or a whole one, and what it leaves half-written is in one place,
which the purge sweeps. The upload's folder is flushed before its version commits. Folders
are named by upload id, a random UUID: the files say nothing of the record, the file or the
patient they belong to.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import func, insert, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from ecrin_platform.db import read_only_session
from ecrin_platform.problems import ServiceError
from records_api.models import ContentChunk
from records_api.settings import Settings

log = logging.getLogger("ecrin.records-api.content")


class RowTaken(Exception):
    """Another request stored this row first (two appends to one session at once), or the
    upload is gone."""


class DatabaseRows:
    """Rows in ``content_chunks``; each written in a short transaction of its own."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def write(self, upload_id: uuid.UUID, seq: int, data: bytes) -> None:
        # A Core connection, not an ORM session: one INSERT needs no unit of work, and a
        # 100 MiB upload writes a hundred of these (same engine, same BEGIN IMMEDIATE on
        # SQLite).
        try:
            async with self.engine.begin() as conn:
                if self.engine.dialect.name == "postgresql":
                    # A row's commit does not wait for its WAL flush: the version's own
                    # commit (synchronous) flushes the WAL up to it, every row before it
                    # included. A crash before that loses rows of an upload never committed.
                    await conn.execute(text("SET LOCAL synchronous_commit = off"))
                await conn.execute(insert(ContentChunk).values(upload_id=upload_id, seq=seq,
                                                               data=data))
        except IntegrityError:
            raise RowTaken() from None

    async def read(self, upload_id: uuid.UUID, seq: int) -> bytes | None:
        async with read_only_session(self.engine) as session:
            data = await session.scalar(select(ContentChunk.data).where(
                ContentChunk.upload_id == upload_id, ContentChunk.seq == seq))
        return None if data is None else bytes(data)

    async def tally(self, upload_id: uuid.UUID) -> tuple[int, int]:
        """How many rows the upload holds, and their bytes."""
        async with read_only_session(self.engine) as session:
            count, total = (await session.execute(
                select(func.count(), func.coalesce(func.sum(func.length(ContentChunk.data)), 0))
                .where(ContentChunk.upload_id == upload_id))).one()
        return int(count), int(total or 0)

    async def sync(self, upload_id: uuid.UUID) -> None:
        """Nothing to do: the version's synchronous commit flushes the rows' WAL."""


class ContentStoreFailed(ServiceError):
    """The content directory failed (full, read-only, an I/O error): nothing was stored or
    read, and the request may be tried again."""

    status, slug, title = 503, "content-store-unavailable", "Content store unavailable"

    def __init__(self) -> None:
        super().__init__("The content store cannot be used right now; try again later.",
                         headers={"Retry-After": "30"})


@contextlib.contextmanager
def _disk(action: str) -> Iterator[None]:
    """An ``OSError`` of the content directory, other than a name found or missing (which
    the callers decide about), becomes a 503 problem, logged by its errno only."""
    try:
        yield
    except (FileNotFoundError, FileExistsError):
        raise
    except OSError as exc:
        raise _failed(action, exc) from None


def _errno(exc: OSError) -> str:
    return errno.errorcode.get(exc.errno or 0, str(exc.errno))


def _failed(action: str, exc: OSError) -> ContentStoreFailed:
    log.error("content directory failed", extra={"action": action, "errno": _errno(exc)})
    return ContentStoreFailed()


def _row_name(seq: int) -> str:
    return f"{seq:08d}"


def _uncache(fd: int) -> None:
    """Drop a row's pages from the page cache once they are on disk (written and flushed,
    or read): a large document is written once and read seldom, so its rows would only push
    out pages that are used. It also lets the next row reuse the pages just given back,
    which on a virtual machine whose host backs guest memory on first touch costs a tenth of
    taking fresh ones: 100 rows written and flushed took 0.31 s of system CPU here keeping
    their pages, 0.04 s dropping each (docs/performance.md, round 13). Advice only: Linux
    and the BSDs have it, a failure changes nothing."""
    if _FADVISE is not None:
        with contextlib.suppress(OSError):
            _FADVISE(fd, 0, 0, os.POSIX_FADV_DONTNEED)


_FADVISE = getattr(os, "posix_fadvise", None)  # not on macOS or Windows


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FileRows:
    """Rows as files ``<root>/<2 hex>/<upload id>/<seq>``. Blocking file work runs in
    threads, never on the event loop. ``root`` must allow hard links (any POSIX local
    filesystem, NFS); every replica of the records API must see the same ``root``.

    An upload's folder is deleted in two steps: renamed into ``<root>/.trash`` (atomic) in
    the transaction that deletes the upload, then removed once that transaction is over.
    After the rename no row can land under the upload's name (a row being written fails,
    and is told :class:`RowTaken`), and whatever is in the trash is garbage whether that
    transaction commits or not: a commit checks its rows once it holds the upload
    (``missing``), so an upload whose folder went to the trash is never committed."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.trash = root / ".trash"
        #: Rows being written, under temporary names, before they are linked to their
        #: number; what a crash leaves here is swept by the purge (``sweep_incoming``).
        self.incoming = root / ".incoming"

    def folder(self, upload_id: uuid.UUID) -> Path:
        return self.root / upload_id.hex[:2] / str(upload_id)

    async def create(self, upload_id: uuid.UUID) -> None:
        """The upload's folder, made and made durable before the upload is recorded: rows
        are written only into an existing folder, so a row written after its upload was
        deleted fails instead of making a folder no upload names."""
        await asyncio.to_thread(self._create, self.folder(upload_id))

    @staticmethod
    def _create(folder: Path) -> None:
        with _disk("create"):
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            _fsync_dir(folder.parent)
            _fsync_dir(folder.parent.parent)

    async def write(self, upload_id: uuid.UUID, seq: int, data: bytes) -> None:
        await asyncio.to_thread(self._write, self.incoming, self.folder(upload_id), seq, data)

    @staticmethod
    def _write(incoming: Path, folder: Path, seq: int, data: bytes) -> None:
        with _disk("write"):
            try:
                fd, temporary = tempfile.mkstemp(prefix=".row-", dir=incoming)
            except FileNotFoundError:  # someone removed it: made again, as at start-up
                try:
                    incoming.mkdir(mode=0o700, exist_ok=True)
                    fd, temporary = tempfile.mkstemp(prefix=".row-", dir=incoming)
                except OSError as exc:  # the directory itself is gone, or not a folder
                    raise _failed("write", exc) from None
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                    _uncache(f.fileno())
                # Exists: another request stored this row. Not found: the folder went to
                # the trash meanwhile (the upload was deleted).
                os.link(temporary, folder / _row_name(seq))
            except (FileExistsError, FileNotFoundError):
                raise RowTaken() from None
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(temporary)

    def sweep_incoming(self, before: float) -> int:
        """Remove rows left half-written in ``incoming`` (by a crash) last modified before
        ``before`` (a time stamp; blocking; the purge's cut-off is at least an hour back,
        and a row being written is modified within milliseconds). Anything there that is
        not a file, or that cannot be removed, is logged and left; the rest go. Returns how
        many went."""
        removed = 0
        with _disk("sweep"):
            try:
                entries = list(os.scandir(self.incoming))
            except FileNotFoundError:
                return 0
        for entry in entries:
            try:
                if (entry.is_file(follow_symlinks=False)
                        and entry.stat(follow_symlinks=False).st_mtime < before):
                    os.unlink(entry.path)
                    removed += 1
            except FileNotFoundError:
                pass
            except OSError as exc:
                log.warning("could not sweep a half-written row; the next purge will",
                            extra={"errno": _errno(exc)})
        return removed

    async def read(self, upload_id: uuid.UUID, seq: int) -> bytes | None:
        return await asyncio.to_thread(self._read, self.folder(upload_id) / _row_name(seq))

    @staticmethod
    def _read(path: Path) -> bytes | None:
        with _disk("read"):
            try:
                with open(path, "rb") as f:
                    data = f.read()
                    _uncache(f.fileno())
                return data
            except FileNotFoundError:
                return None

    async def tally(self, upload_id: uuid.UUID) -> tuple[int, int]:
        return await asyncio.to_thread(self._tally, self.folder(upload_id))

    @staticmethod
    def _tally(folder: Path) -> tuple[int, int]:
        count = total = 0
        with _disk("tally"):
            try:
                with os.scandir(folder) as entries:
                    for entry in entries:
                        if entry.name.isdigit():  # a row (nothing else is linked here)
                            count += 1
                            total += entry.stat().st_size
            except FileNotFoundError:
                pass
        return count, total

    async def sync(self, upload_id: uuid.UUID) -> None:
        """Before the version commits: the rows' names are on disk (each row's data was
        flushed when it was written). A folder gone meanwhile is the commit's to notice."""
        await asyncio.to_thread(self._sync, self.folder(upload_id))

    @staticmethod
    def _sync(folder: Path) -> None:
        with _disk("sync"), contextlib.suppress(FileNotFoundError):
            _fsync_dir(folder)

    def discard(self, upload_ids: list[uuid.UUID]) -> list[Path]:
        """Move these uploads' folders into the trash (blocking: run it in a thread); what
        was moved, for :meth:`empty` once the caller's transaction is over."""
        moved = []
        with _disk("discard"):
            self.trash.mkdir(mode=0o700, exist_ok=True)
            for upload_id in upload_ids:
                target = self.trash / f"{upload_id}.{uuid.uuid4().hex}"
                with contextlib.suppress(FileNotFoundError):
                    os.rename(self.folder(upload_id), target)
                    moved.append(target)
        return moved

    def empty(self, trashed: list[Path] | None = None) -> None:
        """Remove these folders of the trash, or everything in it (blocking). Failures
        are logged and left for the purge, which empties the whole trash."""
        if trashed is None:
            try:
                trashed = list(self.trash.iterdir())
            except FileNotFoundError:
                return
        for path in trashed:
            try:
                shutil.rmtree(path)
            except FileNotFoundError:
                pass
            except OSError as exc:
                log.warning("could not empty the content trash; the purge will",
                            extra={"errno": _errno(exc)})


def content_files(settings: Settings) -> FileRows | None:
    """The content directory's rows, made if missing; None when no directory is set."""
    if settings.content_dir is None:
        return None
    settings.content_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    files = FileRows(settings.content_dir)
    files.incoming.mkdir(mode=0o700, exist_ok=True)
    _fsync_dir(settings.content_dir)
    return files
