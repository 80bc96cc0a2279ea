"""New versions with If-Match, tombstones and the purge, and re-keying."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import func, select

from ecrin_e2ee import RecordDecryptor, ScopeKey, rekey_record_header
from ecrin_platform.audit import verify_chain
from records_api.models import ContentChunk, ContentUpload, Record, RecordVersion
from records_api.records.audit import AUDIT, scope_chain
from records_api.records.purge import purge
from records_api.records.service import now
from tests.records_api.conftest import Practice, b64, unb64


def version_body(record) -> dict:
    body = Practice.body(record)
    return {k: body[k] for k in ("header", "metadata_ciphertext", "content_length")}


async def new_version(practice: Practice, rid: uuid.UUID, record, if_match: str | None):
    headers = practice.headers(**({"If-Match": if_match} if if_match else {}))
    return await practice.client.post(f"/v1/records/{rid}/versions", json=version_body(record),
                                      headers=headers)


async def count(practice: Practice, model, *where) -> int:
    async with practice.app.state.sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(model).where(*where))
                   or 0)


class TestVersions:
    async def test_a_new_version_needs_the_current_etag(self, practice: Practice):
        v1 = await practice.add(b"first")
        rid = v1.header.record_id
        v2 = practice.encrypt(b"second, longer" * 1000, record_id=rid, version=2)
        assert (await new_version(practice, rid, v2, None)).status_code == 428
        stale = await new_version(practice, rid, v2, '"v0"')
        assert stale.status_code == 412 and stale.headers["etag"] == '"v1"'
        created = await new_version(practice, rid, v2, '"v1"')
        assert created.status_code == 201
        assert created.json()["version"]["version"] == 2
        assert created.json()["current_version"] == 1

        # Until its content is in, readers still get version 1.
        got = await practice.client.get(f"/v1/records/{rid}", headers=practice.headers())
        assert got.headers["etag"] == '"v1.k1"'
        assert (await practice.upload(v2)).status_code == 204

        got = await practice.client.get(f"/v1/records/{rid}", headers=practice.headers())
        assert got.headers["etag"] == '"v2.k1"'
        assert got.json()["version"]["header"] == b64(v2.header.to_bytes())
        history = await practice.client.get(f"/v1/records/{rid}/versions",
                                            headers=practice.headers())
        assert [v["version"] for v in history.json()["items"]] == [2, 1]
        page = await practice.client.get(f"/v1/records/{rid}/versions",
                                         params={"limit": 1}, headers=practice.headers())
        assert page.json()["next_before"] == 2
        old = await practice.client.get(f"/v1/records/{rid}/versions/1/content",
                                        headers=practice.headers())
        assert old.content == b"".join(v1.chunks)
        # Version 1 is history now: a new version must name v2.
        v3 = practice.encrypt(b"third", record_id=rid, version=3)
        assert (await new_version(practice, rid, v3, '"v1"')).status_code == 412

    async def test_a_header_for_the_wrong_version_is_422(self, practice: Practice):
        v1 = await practice.add(b"first")
        rid = v1.header.record_id
        wrong = practice.encrypt(b"x", record_id=rid, version=3)
        assert (await new_version(practice, rid, wrong, '"v1"')).status_code == 422
        other_record = practice.encrypt(b"x", version=2)
        assert (await new_version(practice, rid, other_record, '"v1"')).status_code == 422

    async def test_an_abandoned_pending_version_is_replaced(self, practice: Practice):
        v1 = await practice.add(b"first")
        rid = v1.header.record_id
        draft = practice.encrypt(b"draft", record_id=rid, version=2)
        final = practice.encrypt(b"final", record_id=rid, version=2)
        assert (await new_version(practice, rid, draft, '"v1"')).status_code == 201
        assert (await new_version(practice, rid, final, '"v1"')).status_code == 201
        # The draft's content no longer matches the version's header.
        assert (await practice.upload(draft)).status_code == 422
        assert (await practice.upload(final)).status_code == 204

    async def test_a_pending_record_takes_no_new_version(self, practice: Practice):
        v1 = practice.encrypt(b"first")
        await practice.create(v1)
        v2 = practice.encrypt(b"x", record_id=v1.header.record_id, version=2)
        response = await new_version(practice, v1.header.record_id, v2, '"v0"')
        assert response.status_code == 409


class TestDeleteAndPurge:
    async def test_tombstone_hides_then_purge_removes_the_ciphertext(self, practice: Practice):
        record = await practice.add(b"x" * (2 << 20))
        rid = record.header.record_id
        url = f"/v1/records/{rid}"
        assert (await practice.client.delete(url, headers=practice.headers())).status_code == 428
        assert (await practice.client.delete(url, headers=practice.headers(
            **{"If-Match": '"v2"'}))).status_code == 412
        assert (await practice.client.delete(url, headers=practice.headers(
            **{"If-Match": '"v1"'}))).status_code == 204
        for path in (url, f"{url}/versions", f"{url}/versions/1", f"{url}/versions/1/content"):
            assert (await practice.client.get(path, headers=practice.headers())).status_code == 404
        listed = await practice.client.get("/v1/records", headers=practice.headers(),
                                           params={"file_id": str(practice.file_id)})
        assert listed.json()["items"] == []
        # Same id again: still taken (a tombstone keeps it).
        assert (await practice.create(record)).status_code == 409

        upload = ContentUpload.record_id == rid
        assert await count(practice, ContentUpload, upload) == 1
        settings = practice.app.state.settings
        async with practice.app.state.sessionmaker() as session:
            upload_id = await session.scalar(select(ContentUpload.id).where(upload))
        chunks = ContentChunk.upload_id == upload_id
        assert await count(practice, ContentChunk, chunks) == 3

        await purge(practice.app.state.sessionmaker, settings)  # not old enough yet
        assert await count(practice, ContentChunk, chunks) == 3

        later = now() + timedelta(seconds=settings.purge_after_s + 1)
        report = await purge(practice.app.state.sessionmaker, settings, at=later)
        assert report.records >= 1
        assert await count(practice, ContentChunk, chunks) == 0
        assert await count(practice, ContentUpload, upload) == 0
        assert await count(practice, RecordVersion, RecordVersion.record_id == rid) == 0
        async with practice.app.state.sessionmaker() as session:
            tombstone = await session.get(Record, rid)
            assert tombstone is not None and tombstone.purged_at is not None

    async def test_purge_removes_orphan_uploads(self, practice: Practice):
        record = practice.encrypt(b"y")
        await practice.create(record)
        rid = record.header.record_id
        orphan = uuid.uuid4()
        async with practice.app.state.sessionmaker() as session, session.begin():
            session.add(ContentUpload(id=orphan, record_id=rid, version=1,
                                      account_id=practice.owner.id, started_at=now()))
            await session.flush()
            session.add(ContentChunk(upload_id=orphan, seq=0, data=b"partial"))
        settings = practice.app.state.settings
        later = now() + timedelta(seconds=settings.stale_upload_after_s + 1)
        assert (await purge(practice.app.state.sessionmaker, settings, at=later)
                ).orphan_uploads >= 1
        assert await count(practice, ContentChunk, ContentChunk.upload_id == orphan) == 0
        assert (await practice.upload(record)).status_code == 204


class TestRekey:
    async def test_rekey_replaces_the_wrap_only(self, practice: Practice):
        content = b"programme d'exercices" * 4000
        record = await practice.add(content)
        rid = record.header.record_id
        held = await practice.client.get(f"/v1/records/{rid}", headers=practice.headers())
        assert held.headers["etag"] == '"v1.k1"'
        before = await practice.client.get(f"/v1/records/{rid}/versions/1/content",
                                           headers=practice.headers())
        new_key = ScopeKey.generate(practice.file_id, record.header.scope, 2)
        practice.sharing.rotated(practice.file_id, "clinical", 2)
        rotator = practice.actor()
        practice.sharing.grant(practice.file_id, rotator.id, "care_team", clinical="append")
        rekeyed = rekey_record_header(record.header, practice.keys["clinical"], new_key,
                                      rotator.keys)
        body = {"items": [{"record_id": str(rid), "version": 1,
                           "header": b64(rekeyed.to_bytes())}]}
        response = await practice.client.post("/v1/records/rekey", json=body,
                                              headers=practice.headers(rotator))
        assert response.status_code == 200, response.text
        assert response.json()["items"] == [{"record_id": str(rid), "version": 1,
                                             "key_version": 2, "changed": True}]
        # A retry is a no-op; an older wrap is refused.
        again = await practice.client.post("/v1/records/rekey", json=body,
                                           headers=practice.headers(rotator))
        assert again.json()["items"][0]["changed"] is False
        older = {"items": [{"record_id": str(rid), "version": 1,
                            "header": b64(record.header.to_bytes())}]}
        assert (await practice.client.post("/v1/records/rekey", json=older,
                                           headers=practice.headers())).status_code == 409

        # The header changed under the same version number: a client holding the old one
        # gets the new header, not a 304 (the ETag names the key version too).
        fresh = await practice.client.get(f"/v1/records/{rid}", headers={
            **practice.headers(), "If-None-Match": held.headers["etag"]})
        assert (fresh.status_code, fresh.headers["etag"]) == (200, '"v1.k2"')
        got = fresh.json()
        assert got["version"]["key_version"] == 2
        assert got["current_version"] == 1
        after = await practice.client.get(f"/v1/records/{rid}/versions/1/content",
                                          headers=practice.headers())
        assert after.content == before.content
        decryptor = RecordDecryptor(unb64(got["version"]["header"]), record.metadata_ciphertext,
                                    scope_key=new_key,
                                    author=practice.owner.keys.public_identity(),
                                    wrapper=rotator.keys.public_identity())
        assert b"".join(decryptor.decrypt(record.chunks)) == content

    async def test_a_changed_core_is_422(self, practice: Practice):
        record = await practice.add(b"x")
        tampered = bytearray(record.header.to_bytes())
        tampered[100] ^= 1
        tampered[254:258] = (9).to_bytes(4, "big")
        body = {"items": [{"record_id": str(record.header.record_id), "version": 1,
                           "header": b64(bytes(tampered))}]}
        response = await practice.client.post("/v1/records/rekey", json=body,
                                              headers=practice.headers())
        assert response.status_code == 422

    async def test_a_batch_is_all_or_nothing(self, practice: Practice):
        ok = await practice.add(b"a")
        new_key = ScopeKey.generate(practice.file_id, ok.header.scope, 2)
        practice.sharing.rotated(practice.file_id, "clinical", 2)
        rekeyed = rekey_record_header(ok.header, practice.keys["clinical"], new_key,
                                      practice.owner.keys)
        body = {"items": [
            {"record_id": str(ok.header.record_id), "version": 1,
             "header": b64(rekeyed.to_bytes())},
            {"record_id": str(uuid.uuid4()), "version": 1, "header": b64(rekeyed.to_bytes())}]}
        response = await practice.client.post("/v1/records/rekey", json=body,
                                              headers=practice.headers())
        assert response.status_code == 404
        got = await practice.client.get(f"/v1/records/{ok.header.record_id}",
                                        headers=practice.headers())
        assert got.json()["version"]["key_version"] == 1

    async def test_a_batch_is_written_and_audited_item_by_item_in_order(
            self, practice: Practice):
        records = [await practice.add(b"r%d" % i) for i in range(12)]
        new_key = ScopeKey.generate(practice.file_id, records[0].header.scope, 2)
        practice.sharing.rotated(practice.file_id, "clinical", 2)
        rekeyed = [rekey_record_header(r.header, practice.keys["clinical"], new_key,
                                       practice.owner.keys) for r in records]
        first = {"items": [{"record_id": str(h.record_id), "version": 1,
                            "header": b64(h.to_bytes())} for h in rekeyed[:4]]}
        assert (await practice.client.post("/v1/records/rekey", json=first,
                                           headers=practice.headers())).status_code == 200
        # The first four again (a retry, unchanged) mixed with the rest, in another order.
        order = [*range(11, 3, -1), *range(4)]
        body = {"items": [{"record_id": str(rekeyed[i].record_id), "version": 1,
                           "header": b64(rekeyed[i].to_bytes())} for i in order]}
        response = await practice.client.post("/v1/records/rekey", json=body,
                                              headers=practice.headers())
        assert response.status_code == 200, response.text
        assert response.json()["items"] == [
            {"record_id": str(rekeyed[i].record_id), "version": 1, "key_version": 2,
             "changed": i >= 4} for i in order]
        async with practice.app.state.sessionmaker() as session:
            stored = {row.record_id: (row.header, row.key_version) for row in (
                await session.execute(select(RecordVersion).where(
                    RecordVersion.record_id.in_([h.record_id for h in rekeyed])))).scalars()}
            events = await AUDIT.chain(session, scope_chain(practice.file_id, "clinical"))
        assert stored == {h.record_id: (h.to_bytes(), 2) for h in rekeyed}
        assert [e["target"] for e in events if e["action"] == "record.rekey"] == [
            f"record:{rekeyed[i].record_id}/v1" for i in [*range(4), *order[:8]]]
        assert verify_chain(events)

    async def test_over_500_items_is_422(self, practice: Practice):
        item = {"record_id": str(uuid.uuid4()), "version": 1, "header": b64(bytes(410))}
        response = await practice.client.post("/v1/records/rekey",
                                              json={"items": [item] * 501},
                                              headers=practice.headers())
        assert response.status_code == 422
