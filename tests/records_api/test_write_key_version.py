"""A write under a key a leaver may hold is refused by the records API itself (issue 21).

The SDK no longer asks ``GET /v1/rotations`` before every write: the records API refuses a
new record or version whose header uses an older key version than the scope's current one
(``409 key-version-not-current``), and, from a member who rotates (owner, care team), one
made while a rotation of the scope is pending (``409 rotation-pending``). A refusal is
decided on a fresh answer from the sharing service, never on a cached one alone, so a
device that just finished the rotation is not refused again; nothing is written.
"""

from __future__ import annotations

import uuid

from sqlalchemy import func, select

from ecrin_e2ee import ScopeKey
from records_api.models import Record
from tests.records_api.conftest import Practice, b64


def inline(record) -> str:
    return b64(b"".join(record.chunks))


async def record_rows(practice: Practice, rid: uuid.UUID) -> int:
    async with practice.app.state.sessionmaker() as session:
        return int(await session.scalar(
            select(func.count()).select_from(Record).where(Record.id == rid)) or 0)


class TestPendingRotation:
    async def test_the_owner_cannot_write_while_a_rotation_of_the_scope_is_pending(
            self, practice: Practice):
        practice.sharing.pend(practice.file_id, "shared")
        record = practice.encrypt(b"ordonnance", scope="shared")
        refused = await practice.create(record, content=inline(record))
        assert refused.status_code == 409, refused.text
        assert refused.json()["type"].endswith("/rotation-pending")
        assert refused.json()["scope"] == "shared"
        assert await record_rows(practice, record.header.record_id) == 0

    async def test_another_scope_is_not_held_up(self, practice: Practice):
        practice.sharing.pend(practice.file_id, "shared")
        record = practice.encrypt(b"bilan", scope="clinical")
        assert (await practice.create(record, content=inline(record))).status_code == 201

    async def test_once_the_rotation_is_done_the_write_goes_through_without_waiting(
            self, practice: Practice):
        # A first write is refused and the answer cached; the device then rotates: the
        # refusal is re-checked on a fresh answer, so the retry is not refused again.
        practice.sharing.pend(practice.file_id, "shared")
        first = practice.encrypt(b"a", scope="shared")
        assert (await practice.create(first, content=inline(first))).status_code == 409
        practice.sharing.done(practice.file_id, "shared")
        second = practice.encrypt(b"b", scope="shared")
        created = await practice.create(second, content=inline(second))
        assert created.status_code == 201, created.text

    async def test_a_member_who_cannot_rotate_still_writes(self, practice: Practice):
        patient = practice.actor("patient")
        practice.sharing.grant(practice.file_id, patient.id, "patient", shared="append")
        practice.sharing.pend(practice.file_id, "shared")
        record = practice.encrypt(b"scan", scope="shared", author=patient)
        created = await practice.create(record, actor=patient, content=inline(record))
        assert created.status_code == 201, created.text

    async def test_a_new_version_is_refused_too(self, practice: Practice):
        record = practice.encrypt(b"v1", scope="shared")
        assert (await practice.create(record, content=inline(record))).status_code == 201
        practice.sharing.pend(practice.file_id, "shared")
        v2 = practice.encrypt(b"v2", scope="shared", version=2,
                              record_id=record.header.record_id)
        body = {k: v for k, v in practice.body(v2, content=inline(v2)).items()
                if k not in ("record_id", "file_id", "scope")}
        refused = await practice.client.post(
            f"/v1/records/{record.header.record_id}/versions", json=body,
            headers=practice.headers(**{"If-Match": '"v1"'}))
        assert refused.status_code == 409, refused.text
        assert refused.json()["type"].endswith("/rotation-pending")


class TestStaleKeyVersion:
    async def test_a_header_under_an_older_key_version_is_refused(self, practice: Practice):
        practice.sharing.rotated(practice.file_id, "shared", 2)
        record = practice.encrypt(b"written with the old key", scope="shared")
        refused = await practice.create(record, content=inline(record))
        assert refused.status_code == 409, refused.text
        assert refused.json()["type"].endswith("/key-version-not-current")
        assert refused.json()["key_version"] == 2
        assert await record_rows(practice, record.header.record_id) == 0

    async def test_the_current_key_version_is_accepted(self, practice: Practice):
        practice.sharing.rotated(practice.file_id, "shared", 2)
        practice.keys["shared"] = ScopeKey.generate(practice.file_id,
                                                    practice.keys["shared"].scope, 2)
        record = practice.encrypt(b"new key", scope="shared")
        created = await practice.create(record, content=inline(record))
        assert created.status_code == 201, created.text
        assert created.json()["version"]["key_version"] == 2

    async def test_a_key_version_the_sharing_service_does_not_know_is_refused(
            self, practice: Practice):
        practice.keys["shared"] = ScopeKey.generate(practice.file_id,
                                                    practice.keys["shared"].scope, 5)
        record = practice.encrypt(b"from the future", scope="shared")
        refused = await practice.create(record, content=inline(record))
        assert refused.status_code == 409
        assert refused.json()["key_version"] == 1


class TestSteadyState:
    async def test_writes_ask_the_sharing_service_nothing_fresh(self, practice: Practice):
        for i in range(3):
            record = practice.encrypt(f"note {i}".encode())
            assert (await practice.create(record, content=inline(record))).status_code == 201
        assert practice.sharing.fresh_asks == 0
