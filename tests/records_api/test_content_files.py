"""Large content kept as files under the content directory (``records.content_rows``):
only content too large to be read inline goes there, nothing is left behind by a failed
upload or a purge, content stored before the directory was set is still served, and a
records API started without the directory while content is kept there is not ready and
deletes none of it."""

from __future__ import annotations

import asyncio
import errno
import os
import shutil
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from ecrin_e2ee import EncryptedRecord
from ecrin_platform.tokens import Principal
from records_api.models import ContentChunk, ContentUpload, Record, RecordVersion
from records_api.records.content import CONTENT_ROW_BYTES, ContentStore
from records_api.records.content_rows import ContentStoreFailed, FileRows
from records_api.records.purge import purge
from records_api.records.service import now
from tests.records_api.conftest import Practice, b64, drop_rows
from tests.records_api.test_resumable_upload import Session, download, pending

LARGE = 2 * CONTENT_ROW_BYTES + 4321
ROW = CONTENT_ROW_BYTES
OCTET = "application/octet-stream"


async def upload_of(practice: Practice, record_id: uuid.UUID) -> ContentUpload:
    async with practice.app.state.sessionmaker() as session:
        upload = await session.scalar(select(ContentUpload).join(
            RecordVersion, RecordVersion.content_upload_id == ContentUpload.id).where(
            RecordVersion.record_id == record_id))
    assert upload is not None
    return upload


async def database_rows(practice: Practice, upload_id: uuid.UUID) -> int:
    async with practice.app.state.sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(ContentChunk).where(
            ContentChunk.upload_id == upload_id)) or 0)


def folders(root: Path) -> list[Path]:
    return [p for p in root.glob("*/*") if p.is_dir()]


class TestWhereContentGoes:
    async def test_large_content_is_files_small_content_a_database_row(self, records_app,
                                                                       tmp_path: Path):
        root = tmp_path / "files"
        async with records_app(content_dir=root) as practice:
            large = await practice.add(os.urandom(LARGE))
            upload = await upload_of(practice, large.header.record_id)
            assert upload.in_files and await database_rows(practice, upload.id) == 0
            folder = practice.app.state.content_store.files.folder(upload.id)
            assert sorted(p.name for p in folder.iterdir()) == ["00000000", "00000001",
                                                                "00000002"]
            ciphertext = b"".join(large.chunks)
            assert b"".join(p.read_bytes() for p in sorted(folder.iterdir())) == ciphertext
            # The path names an upload, nothing else.
            for name in (large.header.record_id, practice.file_id, practice.owner.id):
                assert str(name) not in str(folder) and name.hex not in str(folder)

            # Streamed (not inline), yet small: read inline later, so a database row.
            small = practice.encrypt(os.urandom(100_000))
            assert (await practice.create(small)).status_code == 201
            assert (await practice.upload(small)).status_code == 204
            upload = await upload_of(practice, small.header.record_id)
            assert not upload.in_files and await database_rows(practice, upload.id) == 1
            read = await practice.client.get(f"/v1/records/{small.header.record_id}",
                                             params={"include": "content"},
                                             headers=practice.headers())
            assert read.status_code == 200 and read.json()["content"] == b64(
                b"".join(small.chunks))

            got = await practice.client.get(
                f"/v1/records/{large.header.record_id}/versions/1/content",
                headers=practice.headers())
            assert got.status_code == 200 and got.content == ciphertext

    async def test_rows_leave_the_page_cache_once_flushed_or_read(
            self, records_app, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
        from records_api.records import content_rows

        dropped: list[int] = []

        def advise(fd: int, offset: int, length: int, advice: int) -> None:
            assert (offset, length, advice) == (0, 0, os.POSIX_FADV_DONTNEED)
            dropped.append(os.fstat(fd).st_size)

        monkeypatch.setattr(content_rows, "_FADVISE", advise)
        async with records_app(content_dir=tmp_path / "files") as practice:
            record = await practice.add(os.urandom(LARGE))
            rows = [ROW, ROW, len(b"".join(record.chunks)) - 2 * ROW]
            assert dropped == rows  # each row once written and flushed
            got = await practice.client.get(
                f"/v1/records/{record.header.record_id}/versions/1/content",
                headers=practice.headers())
            assert got.status_code == 200 and got.content == b"".join(record.chunks)
            assert dropped == rows + rows  # and once read

    async def test_content_stored_before_the_directory_was_set_is_still_served(
            self, records_app, tmp_path: Path):
        async with records_app() as before:
            record = await before.add(os.urandom(LARGE))
        async with records_app(content_dir=tmp_path / "files") as after:
            after.sharing.grant(before.file_id, before.owner.id, "owner", clinical="append")
            headers = after.caller.headers(Principal(str(before.owner.id), "practitioner"))
            got = await after.client.get(
                f"/v1/records/{record.header.record_id}/versions/1/content", headers=headers)
            assert got.status_code == 200 and got.content == b"".join(record.chunks)
            assert not (await upload_of(after, record.header.record_id)).in_files


class TestNothingLeftBehind:
    async def test_a_refused_upload_leaves_no_folder(self, records_app, tmp_path: Path):
        root = tmp_path / "files"
        async with records_app(content_dir=root) as practice:
            record = practice.encrypt(os.urandom(LARGE))
            assert (await practice.create(record)).status_code == 201
            forged = bytearray(b"".join(record.chunks))
            forged[CONTENT_ROW_BYTES + 1] ^= 1
            refused = await practice.upload(record, bytes(forged))
            assert refused.status_code == 422
            assert folders(root) == []
            assert (await practice.upload(record)).status_code == 204
            assert len(folders(root)) == 1

    async def test_the_purge_deletes_a_purged_records_files(self, records_app,
                                                           tmp_path: Path):
        root = tmp_path / "files"
        async with records_app(content_dir=root) as practice:
            record = await practice.add(os.urandom(LARGE))
            rid = record.header.record_id
            assert (await practice.client.delete(f"/v1/records/{rid}", headers=practice.headers(
                **{"If-Match": '"v1"'}))).status_code == 204
            settings = practice.app.state.settings
            assert len(folders(root)) == 1
            await purge(practice.app.state.sessionmaker, settings)  # not old enough yet
            assert len(folders(root)) == 1
            later = now() + timedelta(seconds=settings.purge_after_s + 1)
            assert (await purge(practice.app.state.sessionmaker, settings, at=later)).records
            assert folders(root) == []

    async def test_a_folder_that_cannot_be_deleted_keeps_its_upload_for_the_next_purge(
            self, records_app, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
        root = tmp_path / "files"
        async with records_app(content_dir=root) as practice:
            record = await practice.add(os.urandom(LARGE))
            rid = record.header.record_id
            assert (await practice.client.delete(f"/v1/records/{rid}", headers=practice.headers(
                **{"If-Match": '"v1"'}))).status_code == 204
            upload = await upload_of(practice, rid)
            settings = practice.app.state.settings
            later = now() + timedelta(seconds=settings.purge_after_s + 1)

            def refuse(self: FileRows, upload_ids: list[uuid.UUID]) -> list[Path]:
                raise ContentStoreFailed()  # what a read-only volume gives

            with monkeypatch.context() as patched:
                patched.setattr(FileRows, "discard", refuse)
                report = await purge(practice.app.state.sessionmaker, settings, at=later)
            assert report.failed == 1  # this record; the worker's other tests' may purge
            async with practice.app.state.sessionmaker() as session:
                assert await session.get(ContentUpload, upload.id) is not None
                assert (await session.get(Record, rid)).purged_at is None
            assert len(folders(root)) == 1
            assert (await purge(practice.app.state.sessionmaker, settings, at=later)).records
            assert folders(root) == []

    async def test_a_row_left_half_written_by_a_crash_is_not_stored_and_is_swept(
            self, records_app, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
        root = tmp_path / "files"
        async with records_app(content_dir=root) as practice:
            record = practice.encrypt(os.urandom(LARGE))
            assert (await practice.create(record)).status_code == 201
            rid = record.header.record_id
            opened = await practice.client.post(
                f"/v1/records/{rid}/versions/1/content/uploads", headers=practice.headers())
            assert opened.status_code == 201
            session = opened.headers["location"]

            # Rows are written in ``.incoming`` and linked into the upload's folder.
            files = practice.app.state.content_store.files
            linked: list[Path] = []
            link = os.link

            def watched(source: str, target: Path) -> None:
                linked.append(Path(source).parent)
                link(source, target)

            content = b"".join(record.chunks)
            with monkeypatch.context() as patched:
                patched.setattr(os, "link", watched)
                first = await practice.client.patch(session, content=content[:ROW],
                                                    headers=practice.headers(**{
                                                        "Upload-Offset": "0",
                                                        "Upload-Complete": "?0",
                                                        "Content-Type": OCTET}))
            assert first.status_code == 204, first.text
            assert linked == [files.incoming]
            # A process killed between a row's write and its link leaves the temporary
            # file there: not a row, and swept by the purge once old.
            fd, name = tempfile.mkstemp(prefix=".row-", dir=files.incoming)
            with os.fdopen(fd, "wb") as f:
                f.write(content[ROW:2 * ROW])
            head = await practice.client.head(session, headers=practice.headers())
            assert head.headers["upload-offset"] == str(ROW)
            left = Path(name)

            settings = practice.app.state.settings
            sessionmaker = practice.app.state.sessionmaker
            assert (await purge(sessionmaker, settings)).incoming_rows == 0  # too recent
            assert await asyncio.to_thread(left.exists)
            later = now() + timedelta(seconds=settings.stale_upload_after_s + 1)
            assert (await purge(sessionmaker, settings, at=later)).incoming_rows == 1
            assert not await asyncio.to_thread(any, files.incoming.iterdir())
            # The session goes on where it stood.
            done = await practice.client.patch(session, content=content[ROW:],
                                               headers=practice.headers(**{
                                                   "Upload-Offset": str(ROW),
                                                   "Upload-Complete": "?1",
                                                   "Content-Type": OCTET}))
            assert done.status_code == 204, done.text
            assert (await download(practice, record)).content == content


class TestIncoming:
    """``<dir>/.incoming``, where rows are written before they are linked into place."""

    @staticmethod
    def stale(files: FileRows, name: str, age_s: float = 10**6) -> Path:
        path = files.incoming / name
        path.write_bytes(b"half a row")
        old = time.time() - age_s
        os.utime(path, (old, old))
        return path

    def test_what_the_sweep_cannot_remove_is_left_and_the_rest_goes(
            self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
        files = FileRows(tmp_path / "files")
        files.incoming.mkdir(parents=True)
        (files.incoming / ".row-folder").mkdir()  # not a row: never touched
        stuck = self.stale(files, ".row-stuck")
        rows = [self.stale(files, f".row-{i}") for i in range(5)]
        unlink = os.unlink

        def refuse(path: Any, *args: Any, **kwargs: Any) -> None:
            if str(path) == str(stuck):
                raise PermissionError(errno.EPERM, "Operation not permitted")
            unlink(path, *args, **kwargs)

        monkeypatch.setattr(os, "unlink", refuse)
        assert files.sweep_incoming(time.time()) == len(rows)
        assert sorted(p.name for p in files.incoming.iterdir()) == [".row-folder",
                                                                    ".row-stuck"]

    def test_a_content_directory_gone_or_broken_is_a_503_not_a_500(self, tmp_path: Path):
        files = FileRows(tmp_path / "files")
        upload = uuid.uuid4()
        FileRows._create(files.folder(upload))
        files.incoming.symlink_to(tmp_path / "nowhere")  # dangling: made again, fails
        with pytest.raises(ContentStoreFailed):
            FileRows._write(files.incoming, files.folder(upload), 0, b"row")
        shutil.rmtree(files.root)
        with pytest.raises(ContentStoreFailed):
            FileRows._write(files.incoming, files.folder(upload), 0, b"row")

    async def test_the_purge_never_sweeps_a_row_written_within_the_hour(
            self, records_app, tmp_path: Path):
        async with records_app(content_dir=tmp_path / "files",
                               stale_upload_after_s=60) as practice:
            files = practice.app.state.content_store.files
            settings, sessionmaker = practice.app.state.settings, practice.app.state.sessionmaker
            slow = self.stale(files, ".row-slow-flush", age_s=0)
            assert (await purge(sessionmaker, settings,
                                at=now() + timedelta(minutes=59))).incoming_rows == 0
            assert await asyncio.to_thread(slow.exists)
            assert (await purge(sessionmaker, settings,
                                at=now() + timedelta(minutes=61))).incoming_rows == 1


class TestDiskFailures:
    async def test_a_full_disk_is_a_503_to_retry_and_leaves_nothing(
            self, records_app, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
        root = tmp_path / "files"
        async with records_app(content_dir=root) as practice:
            record = practice.encrypt(os.urandom(LARGE))
            assert (await practice.create(record)).status_code == 201
            made: list[str] = []
            mkstemp = tempfile.mkstemp

            def full_at_the_second_row(*args: Any, **kwargs: Any) -> tuple[int, str]:
                made.append("row")
                if len(made) == 2:
                    raise OSError(errno.ENOSPC, "No space left on device")
                return mkstemp(*args, **kwargs)

            monkeypatch.setattr(tempfile, "mkstemp", full_at_the_second_row)
            refused = await practice.upload(record)
            assert refused.status_code == 503 and refused.headers["retry-after"]
            assert refused.json()["type"].endswith("/content-store-unavailable")
            assert folders(root) == []
            monkeypatch.undo()
            assert (await practice.upload(record)).status_code == 204


class TestDirectoryMissing:
    async def test_a_records_api_without_the_directory_is_not_ready_and_deletes_nothing(
            self, records_app, tmp_path: Path):
        async with records_app(content_dir=tmp_path / "files") as with_files:
            assert (await with_files.client.get("/readyz")).status_code == 200
            kept = await with_files.add(os.urandom(LARGE))
            record = await with_files.add(os.urandom(LARGE))
            rid = record.header.record_id
            assert (await with_files.client.delete(f"/v1/records/{rid}", headers=(
                with_files.headers(**{"If-Match": '"v1"'})))).status_code == 204
            upload = await upload_of(with_files, rid)
        async with records_app() as without:
            ready = await without.client.get("/readyz")
            assert ready.status_code == 503
            assert "ECRIN_RECORDS_CONTENT_DIR" in ready.json()["detail"]
            settings = without.app.state.settings
            later = now() + timedelta(seconds=settings.purge_after_s + 1)
            report = await purge(without.app.state.sessionmaker, settings, at=later)
            assert report.failed >= 1
            async with without.app.state.sessionmaker() as session:
                assert await session.get(ContentUpload, upload.id) is not None
                assert (await session.get(Record, rid)).purged_at is None
            without.sharing.grant(with_files.file_id, with_files.owner.id, "owner",
                                  clinical="append")
            got = await without.client.get(
                f"/v1/records/{kept.header.record_id}/versions/1/content",
                headers=without.headers(with_files.owner))
            assert got.status_code == 503 and got.headers["retry-after"]
            assert got.json()["type"].endswith("/content-store-unavailable")


async def all_but_the_last_piece(practice: Practice) -> tuple[EncryptedRecord, bytes, Session]:
    """A resumable upload holding three whole rows, its last (partial) row still to send."""
    record, data = await pending(practice)
    upload = Session(practice, record)
    await upload.open()
    assert (await upload.patch(data[:3 * ROW], 0, complete=False)).status_code == 204
    return record, data, upload


class TestRacesOfOneClient:
    """A client racing its own requests (a cancel on a timeout while its last piece is
    still going up) must never get a version committed without its content."""

    async def test_rows_gone_before_the_commit_are_never_committed(
            self, records_app, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
        async with records_app(content_dir=tmp_path / "files") as practice:
            record, data, upload = await all_but_the_last_piece(practice)
            upload_id = uuid.UUID(upload.url.rsplit("/", 1)[1])
            completed = ContentStore.completed

            async def rows_vanish_first(self: ContentStore, *args: object, **kw: object):
                # Whatever takes them (a cancel whose commit then failed, an operator):
                # the rows go after the last piece was stored, before the commit.
                await drop_rows(practice, upload_id)
                return await completed(self, *args, **kw)

            monkeypatch.setattr(ContentStore, "completed", rows_vanish_first)
            last = await upload.patch(data[3 * ROW:], 3 * ROW, complete=True)
            assert last.status_code == 409, last.text
            assert (await download(practice, record)).status_code == 404

    async def test_a_cancel_while_the_last_row_is_written_is_a_clean_409(
            self, records_app, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
        async with records_app(content_dir=tmp_path / "files") as practice:
            record, data, upload = await all_but_the_last_piece(practice)
            loop = asyncio.get_running_loop()
            cancelled: list[int] = []
            link = os.link

            def cancel_then_link(source: str, target: Path) -> None:
                # In the writing thread, between the row's temporary file and its name.
                if Path(target).name == "00000003" and not cancelled:
                    cancelled.append(asyncio.run_coroutine_threadsafe(practice.client.delete(
                        upload.url, headers=practice.headers()), loop).result().status_code)
                link(source, target)

            monkeypatch.setattr(os, "link", cancel_then_link)
            last = await upload.patch(data[3 * ROW:], 3 * ROW, complete=True)
            assert cancelled == [204]
            assert last.status_code in (404, 409), last.text
            assert (await download(practice, record)).status_code == 404
            assert folders(tmp_path / "files") == []
