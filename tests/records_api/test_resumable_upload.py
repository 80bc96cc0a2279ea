"""Resumable uploads (records.resumable): a session keeps what a cut request stored, says
where it stands, refuses a piece at the wrong offset, commits the version once complete and
checked, and is only ever the opening account's."""

from __future__ import annotations

import os
import uuid
from datetime import timedelta

import httpx
import pytest

from ecrin_e2ee import EncryptedRecord
from records_api.models import ContentUpload
from records_api.records.content import CONTENT_ROW_BYTES as ROW
from records_api.records.content import delete_uploads
from records_api.records.purge import purge
from records_api.records.service import now
from tests.records_api.conftest import Actor, Practice, drop_rows, rows_held, stream
from tests.records_api.test_audit import chain_of, seen

PARTIAL = "application/partial-upload"
BOTH_STORES = True


def content_of(record: EncryptedRecord) -> bytes:
    return b"".join(record.chunks)


async def pending(practice: Practice, size: int = 3 * ROW + 12345) -> tuple[EncryptedRecord, bytes]:
    """A created record whose content (a little over three rows) is not uploaded yet."""
    record = practice.encrypt(os.urandom(size), scope="shared")
    assert (await practice.create(record)).status_code == 201
    return record, content_of(record)


class Session:
    """One resumable upload, driven over HTTP as an actor."""

    def __init__(self, practice: Practice, record: EncryptedRecord, actor: Actor | None = None):
        self.practice = practice
        self.actor = actor
        header = record.header
        self.base = f"/v1/records/{header.record_id}/versions/{header.record_version}/content"
        self.url = ""

    async def open(self, **headers: str) -> httpx.Response:
        response = await self.practice.client.post(
            f"{self.base}/uploads", headers=self.practice.headers(self.actor, **headers))
        if response.status_code == 201:
            self.url = response.headers["location"]
        return response

    async def head(self, actor: Actor | None = None) -> httpx.Response:
        return await self.practice.client.head(
            self.url, headers=self.practice.headers(actor or self.actor))

    async def patch(self, data, offset: int, *, complete: bool, actor: Actor | None = None,
                    **headers: str) -> httpx.Response:
        sent = self.practice.headers(actor or self.actor, **{
            "content-type": PARTIAL, "upload-offset": str(offset),
            "upload-complete": "?1" if complete else "?0", **headers})
        return await self.practice.client.patch(self.url, content=data, headers=sent)

    async def offset(self) -> int:
        response = await self.head()
        assert response.status_code == 204, response.text
        return int(response.headers["upload-offset"])


async def download(practice: Practice, record: EncryptedRecord) -> httpx.Response:
    rid = record.header.record_id
    return await practice.client.get(f"/v1/records/{rid}/versions/1/content",
                                     headers=practice.headers())


async def rows_of(practice: Practice, url: str) -> int:
    return await rows_held(practice, uuid.UUID(url.rsplit("/", 1)[1]))


class TestCompletion:
    async def test_pieces_complete_commit_once_and_read_back(self, practice: Practice):
        record, data = await pending(practice)
        upload = Session(practice, record)
        opened = await upload.open(**{"upload-length": str(len(data))})
        assert opened.status_code == 201
        assert opened.json()["offset"] == 0 and opened.json()["length"] == len(data)
        assert opened.headers["upload-offset"] == "0"
        assert opened.headers["upload-complete"] == "?0"
        assert f"min-append-size={ROW}" in opened.headers["upload-limit"]
        # Not visible while incomplete.
        assert (await download(practice, record)).status_code == 404

        first = await upload.patch(data[:2 * ROW], 0, complete=False)
        assert first.status_code == 204, first.text
        assert first.headers["upload-offset"] == str(2 * ROW)
        assert await upload.offset() == 2 * ROW
        last = await upload.patch(data[2 * ROW:], 2 * ROW, complete=True)
        assert last.status_code == 204, last.text
        assert last.headers["upload-complete"] == "?1"
        assert last.headers["etag"] == '"v1"'

        got = await download(practice, record)
        assert got.status_code == 200 and got.content == data
        done = await upload.head()
        assert done.headers["upload-complete"] == "?1"
        assert done.headers["upload-offset"] == str(len(data))
        writes = [e for e in seen(await chain_of(practice, "shared"))
                  if e[1] == "record.content.write"]
        assert writes == [(str(practice.owner.id), "record.content.write",
                           f"record:{record.header.record_id}/v1", "ok")]
        # A completed session takes nothing more.
        again = await upload.patch(b"", len(data), complete=True)
        assert again.status_code == 409
        assert again.json()["type"].endswith("/version-committed")

    async def test_the_one_shot_put_still_works(self, practice: Practice):
        record, _ = await pending(practice, 2 * ROW)
        assert (await practice.upload(record)).status_code == 204

    async def test_a_committed_version_opens_no_session(self, practice: Practice):
        record = await practice.add(b"bilan")
        response = await Session(practice, record).open()
        assert response.status_code == 409

    async def test_a_wrong_upload_length_is_refused(self, practice: Practice):
        record, data = await pending(practice)
        response = await Session(practice, record).open(**{"upload-length": str(len(data) + 1)})
        assert response.status_code == 422
        assert response.json()["expected"] == len(data)


class TestResuming:
    async def test_a_cut_piece_keeps_its_whole_rows_and_resumes(self, practice: Practice):
        record, data = await pending(practice)
        upload = Session(practice, record)
        await upload.open()

        async def cut_after(n: int):
            yield data[:n]
            raise ConnectionResetError("the network went away")

        try:  # the platform renders a ConnectionError as a 503; the client is gone anyway
            await upload.patch(cut_after(ROW + ROW // 2), 0, complete=False)
        except ConnectionResetError:
            pass
        # Only the whole row is stored: the half row being buffered is sent again.
        assert await upload.offset() == ROW
        rest = await upload.patch(data[ROW:], ROW, complete=True)
        assert rest.status_code == 204, rest.text
        assert (await download(practice, record)).content == data

    async def test_a_wrong_offset_is_409_with_the_real_one(self, practice: Practice):
        record, data = await pending(practice)
        upload = Session(practice, record)
        await upload.open()
        assert (await upload.patch(data[:ROW], 0, complete=False)).status_code == 204
        for wrong in (0, 2 * ROW, ROW + 1):
            response = await upload.patch(data[wrong:wrong + ROW], wrong, complete=False)
            assert response.status_code == 409
            problem = response.json()
            assert problem["type"].endswith("/mismatching-upload-offset")
            assert problem["expected-offset"] == ROW and problem["provided-offset"] == wrong
            assert response.headers["upload-offset"] == str(ROW)
        assert await rows_of(practice, upload.url) == 1

    async def test_two_appends_at_once_cannot_both_store_a_row(self, practice: Practice):
        """A client that resumed while its cut request was still being received: the first
        to store a row wins, the other is told where the upload stands."""
        record, data = await pending(practice)
        upload = Session(practice, record)
        await upload.open()
        upload_id = uuid.UUID(upload.url.rsplit("/", 1)[1])
        store = practice.app.state.content_store

        async def overtaken():
            # The older request stores the row meanwhile (after this one's offset check).
            held = await store.session(upload_id)
            await store.rows(held).write(upload_id, 0, data[:ROW])
            yield data[:2 * ROW]

        response = await upload.patch(overtaken(), 0, complete=False)
        assert response.status_code == 409
        assert response.json()["type"].endswith("/mismatching-upload-offset")
        assert response.headers["upload-offset"] == str(ROW)
        assert (await upload.patch(data[ROW:], ROW, complete=True)).status_code == 204
        assert (await download(practice, record)).content == data

    async def test_a_piece_that_is_not_whole_rows_must_be_the_last(self, practice: Practice):
        record, data = await pending(practice)
        upload = Session(practice, record)
        await upload.open()
        sized = await upload.patch(data[:ROW + 10], 0, complete=False)
        assert sized.status_code == 422
        assert sized.json()["type"].endswith("/misaligned-upload-piece")
        unsized = await upload.patch(stream(data[:ROW + 10]), 0, complete=False)
        assert unsized.status_code == 422 and unsized.headers["upload-offset"] == str(ROW)
        assert await upload.offset() == ROW  # the whole row stays

    async def test_a_new_session_replaces_the_accounts_earlier_one(self, practice: Practice):
        record, data = await pending(practice)
        first = Session(practice, record)
        await first.open()
        await first.patch(data[:ROW], 0, complete=False)
        second = Session(practice, record)
        await second.open()
        assert (await first.head()).status_code == 404
        assert (await second.patch(data, 0, complete=True)).status_code == 204

    async def test_an_abandoned_session_can_be_deleted(self, practice: Practice):
        record, data = await pending(practice)
        upload = Session(practice, record)
        await upload.open()
        await upload.patch(data[:ROW], 0, complete=False)
        deleted = await practice.client.delete(upload.url, headers=practice.headers())
        assert deleted.status_code == 204
        assert (await upload.head()).status_code == 404
        assert await rows_of(practice, upload.url) == 0


class TestRefusals:
    async def test_another_account_gets_404_and_is_audited(self, practice: Practice):
        record, data = await pending(practice)
        upload = Session(practice, record)
        await upload.open()
        await upload.patch(data[:ROW], 0, complete=False)
        colleague = practice.actor()
        practice.sharing.grant(practice.file_id, colleague.id, "care_team", shared="append")
        stranger = practice.actor()  # no access to the file at all
        for who in (colleague, stranger):
            assert (await upload.head(who)).status_code == 404
            assert (await upload.patch(data[ROW:2 * ROW], ROW, complete=False,
                                       actor=who)).status_code == 404
            assert (await practice.client.delete(
                upload.url, headers=practice.headers(who))).status_code == 404
        assert await upload.offset() == ROW
        denied = [e for e in seen(await chain_of(practice, "shared")) if e[3] == "denied"]
        target = f"record:{record.header.record_id}/v1"
        assert (str(colleague.id), "record.content.write", target, "denied") in denied
        assert (str(stranger.id), "record.content.write", target, "denied") in denied
        # Nor may anyone else open a session on the owner's version.
        assert (await Session(practice, record, colleague).open()).status_code == 403

    async def test_a_revoked_author_cannot_append(self, practice: Practice):
        record, data = await pending(practice)
        upload = Session(practice, record)
        await upload.open()
        practice.sharing.revoke(practice.file_id, practice.owner.id)
        assert (await upload.patch(data, 0, complete=True)).status_code == 404

    async def test_too_long_ends_the_session(self, practice: Practice):
        record, data = await pending(practice)
        upload = Session(practice, record)
        await upload.open()
        sized = await upload.patch(data + b"x", 0, complete=True)
        assert sized.status_code == 422  # refused from Content-Length, before any byte
        assert await upload.offset() == 0
        unsized = await upload.patch(stream(data, b"extra"), 0, complete=True)
        assert unsized.status_code == 422
        assert unsized.json()["type"].endswith("/content-length-mismatch")
        assert (await upload.head()).status_code == 404
        assert await rows_of(practice, upload.url) == 0

    async def test_short_at_completion_ends_the_session(self, practice: Practice):
        record, data = await pending(practice)
        upload = Session(practice, record)
        await upload.open()
        response = await upload.patch(stream(data[:-1]), 0, complete=True)
        assert response.status_code == 422
        assert (await upload.head()).status_code == 404

    async def test_a_wrong_digest_at_completion_commits_nothing(self, practice: Practice):
        record, data = await pending(practice)
        upload = Session(practice, record)
        await upload.open()
        forged = bytearray(data)
        forged[ROW + 7] ^= 1
        assert (await upload.patch(bytes(forged[:2 * ROW]), 0, complete=False)).status_code == 204
        response = await upload.patch(bytes(forged[2 * ROW:]), 2 * ROW, complete=True)
        assert response.status_code == 422
        assert response.json()["type"].endswith("/content-digest-mismatch")
        assert (await upload.head()).status_code == 404
        assert (await download(practice, record)).status_code == 404
        assert await rows_of(practice, upload.url) == 0
        # The right content still goes up afterwards.
        assert (await practice.upload(record)).status_code == 204

    async def test_what_a_losing_request_discards_never_touches_the_committed_content(
            self, practice: Practice):
        """Two completions of one session at once (a client retrying a last piece whose
        answer it lost): the loser's commit finds the version committed, and what it, a
        cancel or the purge then discards must not be the upload the version adopted."""
        record, data = await pending(practice)
        upload = Session(practice, record)
        await upload.open()
        assert (await upload.patch(data, 0, complete=True)).status_code == 204
        store = practice.app.state.content_store
        upload_id = uuid.UUID(upload.url.rsplit("/", 1)[1])
        await store.discard_quietly(upload_id)  # what the losing completion did
        async with practice.app.state.sessionmaker() as session, session.begin():
            # a cancel, an abandoned-session purge
            await delete_uploads(session, [upload_id], files=store.files)
        got = await download(practice, record)
        assert got.status_code == 200 and got.content == data
        again = await upload.patch(b"", len(data), complete=True)  # the retry itself
        assert again.status_code == 409
        assert (await download(practice, record)).content == data

    @pytest.mark.parametrize("forge", [False, True])
    async def test_the_digest_is_checked_by_reading_back_what_this_process_did_not_hash(
            self, practice: Practice, forge: bool):
        """Pieces another replica stored (or stored before a restart): the process has no
        running digest of them, and the completion reads the rows back instead."""
        record, data = await pending(practice)
        upload = Session(practice, record)
        await upload.open()
        sent = bytearray(data)
        if forge:
            sent[7] ^= 1
        assert (await upload.patch(bytes(sent[:2 * ROW]), 0, complete=False)).status_code == 204
        store = practice.app.state.content_store
        assert len(store._running) == 1  # this process hashed both rows in turn
        store._running.clear()  # as if another replica had taken the first piece
        response = await upload.patch(bytes(sent[2 * ROW:]), 2 * ROW, complete=True)
        if forge:
            assert response.status_code == 422
            assert response.json()["type"].endswith("/content-digest-mismatch")
            assert (await download(practice, record)).status_code == 404
        else:
            assert response.status_code == 204, response.text
            assert (await download(practice, record)).content == data

    async def test_a_row_resent_out_of_turn_drops_the_running_digest(self,
                                                                     practice: Practice):
        """A client that re-sends from an offset below the rows hashed (its 409 told it
        so, or a row was lost) cannot leave a digest of other bytes behind."""
        record, data = await pending(practice)
        upload = Session(practice, record)
        await upload.open()
        store = practice.app.state.content_store
        assert (await upload.patch(data[:ROW], 0, complete=False)).status_code == 204
        await drop_rows(practice, uuid.UUID(upload.url.rsplit("/", 1)[1]))
        assert await upload.offset() == 0
        assert (await upload.patch(data[:2 * ROW], 0, complete=False)).status_code == 204
        assert store._running == {}  # row 0 came again: the digest is forgotten
        last = await upload.patch(data[2 * ROW:], 2 * ROW, complete=True)
        assert last.status_code == 204, last.text
        assert (await download(practice, record)).content == data

    @pytest.mark.parametrize("headers", [{"upload-offset": "zero"}, {"upload-complete": "yes"},
                                         {"upload-offset": ""}])
    async def test_missing_or_malformed_headers_are_422(self, practice: Practice, headers):
        record, data = await pending(practice)
        upload = Session(practice, record)
        await upload.open()
        response = await upload.patch(data[:ROW], 0, complete=False, **headers)
        assert response.status_code == 422
        assert response.headers["content-type"] == "application/problem+json"
        assert await upload.offset() == 0

    async def test_octet_stream_is_accepted_too(self, practice: Practice):
        record, data = await pending(practice)
        upload = Session(practice, record)
        await upload.open()
        response = await upload.patch(data, 0, complete=True,
                                      **{"content-type": "application/octet-stream"})
        assert response.status_code == 204

    async def test_only_partial_upload_bodies(self, practice: Practice):
        record, data = await pending(practice)
        upload = Session(practice, record)
        await upload.open()
        response = await upload.patch(data[:ROW], 0, complete=False,
                                      **{"content-type": "application/json"})
        assert response.status_code == 415

    async def test_an_unknown_session_is_404(self, practice: Practice):
        record, _ = await pending(practice)
        upload = Session(practice, record)
        upload.url = f"{upload.base}/uploads/{uuid.uuid4()}"
        assert (await upload.head()).status_code == 404


class TestPurge:
    async def test_stale_sessions_go_after_the_longer_delay(self, practice: Practice):
        record, data = await pending(practice)
        upload = Session(practice, record)
        await upload.open()
        await upload.patch(data[:ROW], 0, complete=False)
        upload_id = uuid.UUID(upload.url.rsplit("/", 1)[1])
        settings = practice.app.state.settings
        maker = practice.app.state.sessionmaker
        # Past the one-shot uploads' delay, not the sessions': kept.
        soon = now() + timedelta(seconds=settings.stale_upload_after_s + 1)
        await purge(maker, settings, at=soon)
        assert await upload.offset() == ROW
        later = now() + timedelta(seconds=settings.resumable_upload_after_s + 1)
        assert (await purge(maker, settings, at=later)).orphan_uploads >= 1
        assert (await upload.head()).status_code == 404
        async with maker() as session:
            assert await session.get(ContentUpload, upload_id) is None
        assert await rows_of(practice, upload.url) == 0

    async def test_a_completed_session_is_never_purged(self, practice: Practice):
        record, data = await pending(practice)
        upload = Session(practice, record)
        await upload.open()
        assert (await upload.patch(data, 0, complete=True)).status_code == 204
        settings = practice.app.state.settings
        later = now() + timedelta(seconds=settings.resumable_upload_after_s + 1)
        await purge(practice.app.state.sessionmaker, settings, at=later)
        assert (await download(practice, record)).content == data
