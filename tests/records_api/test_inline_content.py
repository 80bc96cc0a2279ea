"""Small content sent inside the create (or new version) request: committed by that one
request and transaction, checked exactly like an upload, and never half-written."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import func, select

from records_api.models import ContentChunk, ContentUpload, Record
from records_api.records.audit import AUDIT, scope_chain
from records_api.records.schemas import INLINE_CONTENT_MAX
from tests.records_api.conftest import Practice, b64


def inline(record) -> str:
    return b64(b"".join(record.chunks))


async def counts(practice: Practice, record) -> tuple[int, int, int]:
    """Rows of this record: (records, uploads, content rows)."""
    rid = record.header.record_id
    queries = [
        select(func.count()).select_from(Record).where(Record.id == rid),
        select(func.count()).select_from(ContentUpload).where(ContentUpload.record_id == rid),
        select(func.count()).select_from(ContentChunk).join(
            ContentUpload, ContentUpload.id == ContentChunk.upload_id).where(
            ContentUpload.record_id == rid)]
    async with practice.app.state.sessionmaker() as session:
        records, uploads, rows = [int(await session.scalar(q) or 0) for q in queries]
    return records, uploads, rows


class TestInlineCreate:
    async def test_one_request_commits_the_record_and_serves_its_content(
            self, practice: Practice):
        record = practice.encrypt(b"bilan initial: douleur 6/10")
        rid = record.header.record_id
        created = await practice.create(record, content=inline(record))
        assert created.status_code == 201, created.text
        assert created.json()["state"] == "committed"
        assert created.json()["current_version"] == 1
        assert created.json()["version"]["committed"] is True
        assert created.headers["location"] == f"/v1/records/{rid}"
        h = practice.headers()
        got = await practice.client.get(f"/v1/records/{rid}/versions/1/content", headers=h)
        assert got.status_code == 200 and got.content == b"".join(record.chunks)
        listed = await practice.client.get("/v1/records", headers=h,
                                           params={"file_id": str(practice.file_id)})
        assert [i["record_id"] for i in listed.json()["items"]] == [str(rid)]
        # already committed: the upload route refuses a second content
        assert (await practice.upload(record)).status_code == 409

    async def test_it_is_audited_as_a_create_and_a_content_write(self, practice: Practice):
        record = practice.encrypt(b"x")
        assert (await practice.create(record, content=inline(record))).status_code == 201
        async with practice.app.state.sessionmaker() as session:
            events = await AUDIT.chain(session, scope_chain(practice.file_id, "clinical"))
        assert [e["action"] for e in events] == ["record.create", "record.content.write"]

    async def test_a_replay_answers_the_same_and_writes_nothing_more(self, practice: Practice):
        record = practice.encrypt(b"x")
        first = await practice.create(record, key="inline-key-01", content=inline(record))
        before = await counts(practice, record)
        again = await practice.create(record, key="inline-key-01", content=inline(record))
        assert again.status_code == 201 and again.json() == first.json()
        assert again.headers["idempotent-replayed"] == "true"
        assert await counts(practice, record) == before == (1, 1, 1)

    async def test_content_that_is_not_the_headers_is_422_and_stores_nothing(
            self, practice: Practice):
        record = practice.encrypt(b"x")
        data = bytearray(b"".join(record.chunks))
        data[5] ^= 1
        response = await practice.create(record, content=b64(bytes(data)))
        assert response.status_code == 422
        assert response.json()["type"].endswith("/content-digest-mismatch")
        assert await counts(practice, record) == (0, 0, 0)

    async def test_content_of_another_length_is_422_and_stores_nothing(
            self, practice: Practice):
        record = practice.encrypt(b"x")
        data = b"".join(record.chunks)
        response = await practice.create(record, content=b64(data[:-1]))
        assert response.status_code == 422
        assert response.json()["type"].endswith("/content-length-mismatch")
        assert await counts(practice, record) == (0, 0, 0)

    @pytest.mark.parametrize("content", ["", "not base64!", 12])
    async def test_malformed_content_is_422(self, practice: Practice, content):
        record = practice.encrypt(b"x")
        response = await practice.create(record, content=content)
        assert response.status_code == 422
        assert response.headers["content-type"] == "application/problem+json"
        assert await counts(practice, record) == (0, 0, 0)

    async def test_content_over_the_inline_limit_must_be_uploaded(self, practice: Practice):
        record = practice.encrypt(b"\0" * (INLINE_CONTENT_MAX + 1))
        data = b"".join(record.chunks)
        assert len(data) > INLINE_CONTENT_MAX
        response = await practice.create(record, content=b64(data))
        assert response.status_code in (413, 422)
        assert await counts(practice, record) == (0, 0, 0)
        # the two-step path takes it
        assert (await practice.create(record)).status_code == 201
        assert (await practice.upload(record)).status_code == 204

    async def test_a_read_only_grantee_cannot_create_inline(self, practice: Practice):
        reader = practice.actor()
        practice.sharing.grant(practice.file_id, reader.id, "patient", shared="read")
        record = practice.encrypt(b"x", scope="shared", author=reader)
        response = await practice.create(record, actor=reader, content=inline(record))
        assert response.status_code == 403
        assert await counts(practice, record) == (0, 0, 0)

    async def test_a_stranger_gets_404_and_nothing_is_stored(self, practice: Practice):
        stranger = practice.actor()
        record = practice.encrypt(b"x", author=stranger)
        response = await practice.create(record, actor=stranger, content=inline(record))
        assert response.status_code == 404
        assert await counts(practice, record) == (0, 0, 0)


class TestInlineVersion:
    async def test_a_new_version_with_content_is_committed_at_once(self, practice: Practice):
        first = await practice.add(b"v1")
        rid = first.header.record_id
        second = practice.encrypt(b"v2, revu", record_id=rid, version=2)
        body = {"header": b64(second.header.to_bytes()),
                "metadata_ciphertext": b64(second.metadata_ciphertext),
                "content_length": sum(len(c) for c in second.chunks),
                "content": inline(second)}
        h = practice.headers(**{"If-Match": '"v1"'})
        made = await practice.client.post(f"/v1/records/{rid}/versions", json=body, headers=h)
        assert made.status_code == 201, made.text
        assert made.json()["current_version"] == 2
        assert made.headers["location"] == f"/v1/records/{rid}/versions/2"
        got = await practice.client.get(f"/v1/records/{rid}/versions/2/content",
                                        headers=practice.headers())
        assert got.content == b"".join(second.chunks)
        bad = practice.encrypt(b"v3", record_id=rid, version=3)
        body = {**body, "header": b64(bad.header.to_bytes()),
                "metadata_ciphertext": b64(bad.metadata_ciphertext),
                "content_length": sum(len(c) for c in bad.chunks)}  # v2's content: wrong
        h = practice.headers(**{"If-Match": '"v2"'})
        refused = await practice.client.post(f"/v1/records/{rid}/versions", json=body,
                                             headers=h)
        assert refused.status_code == 422
        record = await practice.client.get(f"/v1/records/{rid}", headers=practice.headers())
        assert record.json()["current_version"] == 2


async def test_unknown_file_is_404(practice: Practice):
    record = practice.encrypt(b"x")
    response = await practice.create(record, file_id=str(uuid.uuid4()),
                                     content=inline(record))
    assert response.status_code in (404, 422)


class TestInlineRead:
    """``GET /v1/records/{id}?include=content``: a small record's latest version and its
    content in one request, audited as one content read (issue 21)."""

    async def test_one_request_serves_the_version_and_its_content(self, practice: Practice):
        record = practice.encrypt(b"note de seance")
        assert (await practice.create(record, content=inline(record))).status_code == 201
        rid = record.header.record_id
        got = await practice.client.get(f"/v1/records/{rid}", headers=practice.headers(),
                                        params={"include": "content"})
        assert got.status_code == 200, got.text
        assert got.json()["content"] == inline(record)
        assert got.json()["version"]["version"] == 1 and got.headers["etag"] == '"v1.k1"'
        async with practice.app.state.sessionmaker() as session:
            events = await AUDIT.chain(session, scope_chain(practice.file_id, "clinical"))
        reads = [(e["action"], e["target"]) for e in events
                 if e["action"] not in ("record.create", "record.content.write")]
        assert reads == [("record.content.read", f"record:{rid}/v1")]

    async def test_without_include_there_is_no_content(self, practice: Practice):
        record = practice.encrypt(b"x")
        assert (await practice.create(record, content=inline(record))).status_code == 201
        got = await practice.client.get(f"/v1/records/{record.header.record_id}",
                                        headers=practice.headers())
        assert got.status_code == 200 and "content" not in got.json()

    async def test_large_content_is_left_to_the_download(self, practice: Practice):
        record = practice.encrypt(b"\0" * (INLINE_CONTENT_MAX + 1))
        assert (await practice.create(record)).status_code == 201
        assert (await practice.upload(record)).status_code == 204
        got = await practice.client.get(f"/v1/records/{record.header.record_id}",
                                        headers=practice.headers(),
                                        params={"include": "content"})
        assert got.status_code == 200 and "content" not in got.json()
        async with practice.app.state.sessionmaker() as session:
            events = await AUDIT.chain(session, scope_chain(practice.file_id, "clinical"))
        assert events[-1]["action"] == "record.read"  # no content was served

    async def test_a_stranger_gets_nothing_and_is_audited(self, practice: Practice):
        # the version and its content are read with the record, before the access check
        record = practice.encrypt(b"note de seance")
        assert (await practice.create(record, content=inline(record))).status_code == 201
        stranger = practice.actor()
        got = await practice.client.get(f"/v1/records/{record.header.record_id}",
                                        headers=practice.headers(stranger),
                                        params={"include": "content"})
        assert got.status_code == 404 and inline(record) not in got.text
        async with practice.app.state.sessionmaker() as session:
            events = await AUDIT.chain(session, scope_chain(practice.file_id, "clinical"))
        assert (events[-1]["actor"], events[-1]["action"], events[-1]["outcome"]) == (
            str(stranger.id), "record.read", "denied")

    async def test_the_latest_version_is_served_and_a_pending_record_is_not(
            self, practice: Practice):
        first = practice.encrypt(b"v1")
        assert (await practice.create(first, content=inline(first))).status_code == 201
        rid = first.header.record_id
        second = practice.encrypt(b"v2 plus longue", record_id=rid, version=2)
        body = {k: v for k, v in Practice.body(second).items()
                if k in ("header", "metadata_ciphertext", "content_length")}
        made = await practice.client.post(f"/v1/records/{rid}/versions",
                                          json={**body, "content": inline(second)},
                                          headers=practice.headers(**{"If-Match": '"v1"'}))
        assert made.status_code == 201, made.text
        got = await practice.client.get(f"/v1/records/{rid}", headers=practice.headers(),
                                        params={"include": "content"})
        assert got.json()["version"]["version"] == 2
        assert got.json()["content"] == inline(second)
        pending = practice.encrypt(b"pas encore")
        assert (await practice.create(pending)).status_code == 201
        got = await practice.client.get(f"/v1/records/{pending.header.record_id}",
                                        headers=practice.headers(),
                                        params={"include": "content"})
        assert got.status_code == 404

    async def test_an_unknown_include_is_refused(self, practice: Practice):
        record = practice.encrypt(b"x")
        assert (await practice.create(record, content=inline(record))).status_code == 201
        got = await practice.client.get(f"/v1/records/{record.header.record_id}",
                                        headers=practice.headers(),
                                        params={"include": "everything"})
        assert got.status_code == 422
