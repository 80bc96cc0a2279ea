"""Every write and every ciphertext read lands in the file's hash-chained audit log."""

from __future__ import annotations

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
