"""Every write and every ciphertext read lands in the file's hash-chained audit log."""

from __future__ import annotations

import asyncio

from ecrin_platform.audit import verify_chain
from records_api.records.audit import AUDIT, file_chain
from tests.records_api.conftest import Practice


class TestAuditTrail:
    async def test_writes_and_reads_are_chained_per_file(self, practice: Practice):
        record = await practice.add(b"bilan")
        rid = record.header.record_id
        h = practice.headers()
        await practice.client.get(f"/v1/records/{rid}", headers=h)
        await practice.client.get(f"/v1/records/{rid}/versions/1/content", headers=h)
        await practice.client.get("/v1/records", headers=h,
                                  params={"file_id": str(practice.file_id)})
        stranger = practice.actor()
        assert (await practice.client.get(f"/v1/records/{rid}", headers=practice.headers(
            stranger))).status_code == 404
        await practice.client.delete(f"/v1/records/{rid}",
                                     headers=practice.headers(**{"If-Match": '"v1"'}))

        async with practice.app.state.sessionmaker() as session:
            events = await AUDIT.chain(session, file_chain(practice.file_id))
        assert [e["action"] for e in events] == [
            "record.create", "record.content.write", "record.read", "record.content.read",
            "record.list", "record.delete"]
        assert {e["actor"] for e in events} == {str(practice.owner.id)}
        assert events[0]["target"] == f"record:{rid}/v1"
        assert verify_chain(events)
        events[2]["target"] = f"record:{rid}/v9"
        assert not verify_chain(events)

    async def test_owner_patient_and_representatives_read_the_chain_others_do_not(
            self, practice: Practice):
        await practice.add(b"bilan")
        path, params = "/v1/records/audit", {"file_id": str(practice.file_id)}
        mine = await practice.client.get(path, params=params, headers=practice.headers())
        assert mine.status_code == 200
        assert mine.headers["cache-control"] == "no-store"
        assert verify_chain(mine.json()["events"])
        for relationship, expected in (("patient", 200), ("parent", 200), ("guardian", 200),
                                       ("secretary", 404), ("care_team", 404)):
            someone = practice.actor("patient")
            practice.sharing.grant(practice.file_id, someone.id, relationship, shared="read")
            response = await practice.client.get(path, params=params,
                                                 headers=practice.headers(someone))
            assert response.status_code == expected, relationship
        stranger = practice.actor()
        assert (await practice.client.get(path, params=params, headers=practice.headers(
            stranger))).status_code == 404


async def test_a_read_never_holds_two_pooled_connections(records_app):
    """A read's audit event is written in a transaction of its own after the read session
    gave its connection back: with a pool of one connection every read still answers (it
    used to wait for a second connection, and 64 concurrent reads on PostgreSQL took every
    connection and then waited out the pool timeout)."""
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
