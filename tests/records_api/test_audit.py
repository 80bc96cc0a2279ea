"""Every write, every ciphertext read and every refused access to a record lands in the
hash-chained audit log of the record's scope (``file:<id>:<scope>``)."""

from __future__ import annotations

import asyncio
import uuid

from ecrin_platform.audit import verify_chain
from records_api.records.audit import AUDIT, file_chain, scope_chain
from tests.records_api.conftest import Practice


async def chain_of(practice: Practice, scope: str | None) -> list[dict]:
    name = file_chain(practice.file_id) if scope is None else scope_chain(practice.file_id,
                                                                          scope)
    async with practice.app.state.sessionmaker() as session:
        return await AUDIT.chain(session, name)


def seen(events: list[dict]) -> list[tuple[str, str, str, str]]:
    return [(e["actor"], e["action"], e["target"], e["outcome"]) for e in events]


class TestAuditTrail:
    async def test_writes_and_reads_are_chained_per_scope(self, practice: Practice):
        record = await practice.add(b"bilan")
        rid = record.header.record_id
        h = practice.headers()
        await practice.client.get(f"/v1/records/{rid}", headers=h)
        await practice.client.get(f"/v1/records/{rid}/versions/1/content", headers=h)
        await practice.client.get("/v1/records", headers=h,
                                  params={"file_id": str(practice.file_id)})
        await practice.client.delete(f"/v1/records/{rid}",
                                     headers=practice.headers(**{"If-Match": '"v1"'}))

        events = await chain_of(practice, "clinical")
        assert [e["action"] for e in events] == [
            "record.create", "record.content.write", "record.read", "record.content.read",
            "record.list", "record.delete"]
        assert {e["actor"] for e in events} == {str(practice.owner.id)}
        assert {e["outcome"] for e in events} == {"ok"}
        assert events[0]["target"] == f"record:{rid}/v1"
        assert events[0]["chain"] == f"file:{practice.file_id}:clinical"
        assert verify_chain(events)
        events[2]["target"] = f"record:{rid}/v9"
        assert not verify_chain(events)
        # Nothing in the file's chain (events from before chains were per scope); the
        # listing is one event per scope listed, each in its own chain.
        assert await chain_of(practice, None) == []
        for scope in ("shared", "administrative"):
            assert seen(await chain_of(practice, scope)) == [
                (str(practice.owner.id), "record.list", f"file:{practice.file_id}/{scope}",
                 "ok")]

    async def test_a_scope_chain_holds_only_that_scope(self, practice: Practice):
        clinical = await practice.add(b"bilan", scope="clinical")
        shared = await practice.add(b"exercices", scope="shared")
        for record in (clinical, shared):
            await practice.client.get(f"/v1/records/{record.header.record_id}",
                                      headers=practice.headers())
        text = str(await chain_of(practice, "shared"))
        assert str(shared.header.record_id) in text
        assert str(clinical.header.record_id) not in text


class TestRefusedAccesses:
    async def test_refused_reads_and_writes_are_denied_events(self, practice: Practice):
        record = await practice.add(b"bilan", scope="shared")
        rid = record.header.record_id
        stranger, patient = practice.actor(), practice.actor("patient")
        practice.sharing.grant(practice.file_id, patient.id, "patient", shared="append")
        for path in (f"/v1/records/{rid}", f"/v1/records/{rid}/versions",
                     f"/v1/records/{rid}/versions/1",
                     f"/v1/records/{rid}/versions/1/content"):
            response = await practice.client.get(path, headers=practice.headers(stranger))
            assert response.status_code == 404, path
        refused = await practice.client.delete(f"/v1/records/{rid}", headers=practice.headers(
            patient, **{"If-Match": '"v1"'}))
        assert refused.status_code == 403
        wrap = await practice.client.post(f"/v1/records/{rid}/versions/1/wrap",
                                          json={"key_version": 1},
                                          headers=practice.headers(patient))
        assert wrap.status_code == 403
        rekey = await practice.client.post("/v1/records/rekey", headers=practice.headers(
            stranger), json={"items": [{"record_id": str(rid), "version": 1,
                                        "header": practice.body(record)["header"]}]})
        assert rekey.status_code == 404
        headers = await practice.client.get("/v1/records/headers", headers=practice.headers(
            patient), params={"file_id": str(practice.file_id), "scope": "shared"})
        assert headers.status_code == 403

        target = f"record:{rid}"
        assert seen(await chain_of(practice, "shared"))[2:] == [
            (str(stranger.id), "record.read", f"{target}/v1", "denied"),
            (str(stranger.id), "record.history", target, "denied"),
            (str(stranger.id), "record.read", f"{target}/v1", "denied"),
            (str(stranger.id), "record.content.read", f"{target}/v1", "denied"),
            (str(patient.id), "record.delete", target, "denied"),
            (str(patient.id), "record.wrap.restore", f"{target}/v1", "denied"),
            (str(stranger.id), "record.rekey", f"{target}/v1", "denied"),
            (str(patient.id), "record.headers.list", f"file:{practice.file_id}/shared",
             "denied")]
        # The refusals were audited although each request rolled back; the record is intact.
        got = await practice.client.get(f"/v1/records/{rid}", headers=practice.headers())
        assert got.status_code == 200

    async def test_an_id_that_names_no_record_writes_nothing(self, practice: Practice):
        stranger = practice.actor()
        for _ in range(3):
            response = await practice.client.get(f"/v1/records/{uuid.uuid4()}",
                                                 headers=practice.headers(stranger))
            assert response.status_code == 404
        async with practice.app.state.sessionmaker() as session:
            rows = await session.execute(AUDIT.model.__table__.select().where(
                AUDIT.model.actor == str(stranger.id)))
            assert rows.all() == []


class TestWhoReadsWhichChain:
    async def test_each_reader_reads_the_chains_of_the_scopes_it_may_read(
            self, practice: Practice):
        await practice.add(b"bilan")
        path = "/v1/records/audit"

        async def status(actor, scope: str | None) -> int:
            params = {"file_id": str(practice.file_id)} | ({"scope": scope} if scope else {})
            response = await practice.client.get(path, params=params,
                                                 headers=practice.headers(actor))
            return response.status_code

        mine = await practice.client.get(path, headers=practice.headers(), params={
            "file_id": str(practice.file_id), "scope": "clinical"})
        assert mine.status_code == 200
        assert mine.headers["cache-control"] == "no-store"
        assert mine.json()["chain"] == f"file:{practice.file_id}:clinical"
        assert verify_chain(mine.json()["events"]) and mine.json()["events"]
        for scope in (None, "clinical", "shared", "administrative"):
            assert await status(practice.owner, scope) == 200, scope
        for relationship in ("patient", "parent", "guardian", "secretary", "care_team"):
            someone = practice.actor("patient")
            practice.sharing.grant(practice.file_id, someone.id, relationship, shared="read")
            reader = relationship in ("patient", "parent", "guardian")
            expected = {None: 200 if reader else 404, "shared": 200 if reader else 404,
                        "clinical": 404, "administrative": 404}
            for scope, code in expected.items():
                assert await status(someone, scope) == code, (relationship, scope)
        stranger = practice.actor()
        for scope in (None, "shared"):
            assert await status(stranger, scope) == 404


async def test_a_read_never_holds_two_pooled_connections(records_app):
    """A read's audit event is written in a transaction of its own after the read session
    gave its connection back: with a pool of one connection every read still answers (it
    used to wait for a second connection, and 64 concurrent reads on PostgreSQL took every
    connection and then waited out the pool timeout). A refusal is audited the same way."""
    async with records_app(db_pool_size=1, db_max_overflow=0) as practice:
        record = await practice.add(b"bilan")
        rid, h = record.header.record_id, practice.headers()
        for path in (f"/v1/records/{rid}", f"/v1/records/{rid}/versions/1/content",
                     f"/v1/records/{rid}/versions", f"/v1/records/{rid}/versions/1"):
            response = await asyncio.wait_for(practice.client.get(path, headers=h), 20)
            assert response.status_code == 200, (path, response.status_code)
        listed = await asyncio.wait_for(practice.client.get(
            "/v1/records", headers=h, params={"file_id": str(practice.file_id)}), 20)
        assert listed.status_code == 200
        stranger = practice.headers(practice.actor())
        refused = await asyncio.wait_for(practice.client.get(f"/v1/records/{rid}",
                                                             headers=stranger), 20)
        assert refused.status_code == 404
        deleted = await asyncio.wait_for(practice.client.delete(
            f"/v1/records/{rid}", headers={**stranger, "If-Match": '"v1"'}), 20)
        assert deleted.status_code == 404
