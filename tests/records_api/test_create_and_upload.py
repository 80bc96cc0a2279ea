"""Creation rules (header matching, idempotency) and upload rules (length, digest, limits)."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import func, select

from records_api.models import ContentChunk, ContentUpload
from tests.records_api.conftest import Practice, b64, stream


async def chunk_rows(practice: Practice) -> int:
    async with practice.app.state.sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(ContentChunk)) or 0)


async def uploads_of(practice: Practice, record_id: uuid.UUID) -> int:
    async with practice.app.state.sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(ContentUpload).where(
            ContentUpload.record_id == record_id)) or 0)


class TestHeaderMustMatch:
    @pytest.mark.parametrize("field", ["file_id", "record_id", "scope"])
    async def test_a_body_that_disagrees_with_the_header_is_422(self, practice: Practice, field):
        record = practice.encrypt(b"x")
        other = {"file_id": str(uuid.uuid4()), "record_id": str(uuid.uuid4()),
                 "scope": "shared"}[field]
        if field == "file_id":
            practice.sharing.grant(uuid.UUID(other), practice.owner.id, clinical="append")
        response = await practice.create(record, **{field: other})
        assert response.status_code == 422
        assert response.json()["type"].endswith("/invalid-header")

    async def test_a_header_for_version_2_cannot_create(self, practice: Practice):
        record = practice.encrypt(b"x", version=2)
        assert (await practice.create(record)).status_code == 422

    async def test_a_header_by_another_author_is_422(self, practice: Practice):
        colleague = practice.actor()
        record = practice.encrypt(b"x", author=colleague)
        response = await practice.create(record)
        assert response.status_code == 422 and response.json()["field"] == "author_id"

    async def test_a_content_length_the_header_does_not_imply_is_422(self, practice: Practice):
        record = practice.encrypt(b"x")
        right = sum(len(c) for c in record.chunks)
        response = await practice.create(record, content_length=right + 1)
        assert response.status_code == 422
        assert response.json()["expected"] == right

    async def test_garbage_header_is_422(self, practice: Practice):
        record = practice.encrypt(b"x")
        assert (await practice.create(record, header=b64(bytes(410)))).status_code == 422
        assert (await practice.create(record, header="not base64!")).status_code == 422


class TestIdempotency:
    async def test_same_key_same_body_gives_the_same_answer(self, practice: Practice):
        record = practice.encrypt(b"x")
        first = await practice.create(record, key="key-0000000001")
        again = await practice.create(record, key="key-0000000001")
        assert first.status_code == again.status_code == 201
        assert again.json() == first.json()
        assert again.headers["idempotent-replayed"] == "true"
        assert (await practice.upload(record)).status_code == 204
        replay = await practice.create(record, key="key-0000000001")
        assert replay.json() == first.json()
        listed = await practice.client.get("/v1/records", headers=practice.headers(),
                                           params={"file_id": str(practice.file_id)})
        assert len(listed.json()["items"]) == 1

    async def test_same_key_other_body_is_409(self, practice: Practice):
        await practice.create(practice.encrypt(b"x"), key="key-0000000002")
        other = await practice.create(practice.encrypt(b"y"), key="key-0000000002")
        assert other.status_code == 409
        assert other.json()["type"].endswith("/idempotency-key-reused")

    async def test_another_key_for_an_existing_record_id_is_409(self, practice: Practice):
        record = practice.encrypt(b"x")
        assert (await practice.create(record)).status_code == 201
        again = await practice.create(record)
        assert again.status_code == 409 and again.json()["type"].endswith("/record-exists")

    async def test_a_key_is_required(self, practice: Practice):
        record = practice.encrypt(b"x")
        response = await practice.client.post("/v1/records", json=practice.body(record),
                                              headers=practice.headers())
        assert response.status_code == 400
        assert response.json()["type"].endswith("/idempotency-key-required")


class TestUpload:
    async def test_short_content_is_422_and_nothing_is_committed(self, practice: Practice):
        record = practice.encrypt(b"z" * 300_000)
        await practice.create(record)
        data = b"".join(record.chunks)
        before = await chunk_rows(practice)
        response = await practice.upload(record, content=stream(data[:-1]))
        assert response.status_code == 422
        assert response.json()["type"].endswith("/content-length-mismatch")
        assert await chunk_rows(practice) == before
        assert await uploads_of(practice, record.header.record_id) == 0
        assert (await practice.client.get(f"/v1/records/{record.header.record_id}",
                                          headers=practice.headers())).status_code == 404
        # The version can still be completed afterwards.
        assert (await practice.upload(record)).status_code == 204

    async def test_long_content_is_422(self, practice: Practice):
        record = practice.encrypt(b"z" * 1000)
        await practice.create(record)
        data = b"".join(record.chunks)
        response = await practice.upload(record, content=stream(data, b"extra"))
        assert response.status_code == 422
        declared = await practice.upload(record, content=data + b"extra")
        assert declared.status_code == 422
        assert await uploads_of(practice, record.header.record_id) == 0

    async def test_content_other_than_the_header_digest_is_422(self, practice: Practice):
        record = practice.encrypt(b"z" * 1000)
        await practice.create(record)
        data = bytearray(b"".join(record.chunks))
        data[100] ^= 1
        response = await practice.upload(record, content=bytes(data))
        assert response.status_code == 422
        assert response.json()["type"].endswith("/content-digest-mismatch")
        assert await uploads_of(practice, record.header.record_id) == 0

    async def test_only_octet_stream_is_accepted(self, practice: Practice):
        record = practice.encrypt(b"x")
        await practice.create(record)
        response = await practice.upload(record, **{"content-type": "application/json"})
        assert response.status_code == 415

    async def test_an_abandoned_stream_leaves_no_rows(self, practice: Practice):
        record = practice.encrypt(b"q" * (3 << 20))
        await practice.create(record)
        data = b"".join(record.chunks)
        before = await chunk_rows(practice)

        async def cut_short():
            yield data[: 2 << 20]
            raise ConnectionResetError("client went away")

        try:  # the platform renders a ConnectionError as a 503; either way, nothing stays
            response = await practice.upload(record, content=cut_short())
            assert response.status_code == 503
        except ConnectionResetError:
            pass
        assert await chunk_rows(practice) == before
        assert await uploads_of(practice, record.header.record_id) == 0


class TestLimits:
    async def test_over_the_limit_is_413(self, records_app):
        async with records_app(max_upload_bytes=200_000) as practice:
            big = practice.encrypt(b"b" * 300_000)
            response = await practice.create(big)
            assert response.status_code == 413
            small = practice.encrypt(b"s" * 1000)
            await practice.create(small)
            url = f"/v1/records/{small.header.record_id}/versions/1/content"
            octet = practice.headers(**{"content-type": "application/octet-stream"})
            response = await practice.client.put(url, content=b"\0" * 250_000, headers=octet)
            assert response.status_code == 413
            assert response.headers["cache-control"] == "no-store"
            assert (await practice.upload(small)).status_code == 204
