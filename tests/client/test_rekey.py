"""``Sharing.rekey`` against the fake services: headers only, every committed version, each
verified before it is re-signed, pages and batches overlapping, failures that stop it."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid

import pytest
from ecrin_client import Conflict, Records, sharing
from ecrin_client.kine import PatientIdentity, RecordMetadata, SessionNote
from ecrin_client.sharing import RekeyStats, Sharing

from ecrin_e2ee import Scope, ScopeKey
from tests.client.fake_records import FakeRecords, FakeVersion, key_version
from tests.client.test_records import unlocked

NOTE = SessionNote(date=dt.date(2026, 3, 2), acts=["AMK 7.5"], pain=4, notes="Épaule").to_bytes()


def meta(title: str) -> RecordMetadata:
    return RecordMetadata(title=title, kind="session-note", content_type="application/json",
                          size=len(NOTE), created_at=dt.datetime(2026, 3, 2, tzinfo=dt.UTC))


@pytest.fixture
def fake() -> FakeRecords:
    return FakeRecords()


@pytest.fixture
async def file(fake, device_a, monkeypatch):
    """Four clinical records, one with a second version and one with a pending third; pages
    of 2 headers and batches of 2 items so that a few records cross every boundary."""
    monkeypatch.setattr(sharing, "HEADERS_PAGE", 2)
    monkeypatch.setattr(sharing, "REKEY_BATCH", 2)
    client, records, patients = await unlocked(fake, device_a)
    patient = await patients.create(PatientIdentity(name="Rotation", birth_date=dt.date(
        1990, 1, 1)))
    made = [await records.create(patient.file_id, "clinical", meta(f"n{i}"), NOTE)
            for i in range(4)]
    await records.add_version(made[0].record_id, meta("n0 v2"), NOTE)
    first = fake.records[made[1].record_id].versions[1]  # a second version, never uploaded:
    fake.records[made[1].record_id].versions[2] = FakeVersion(
        first.header, first.metadata_ciphertext, first.content_length, first.author,
        first.created_at)
    yield records, uuid.UUID(patient.file_id), [m.record_id for m in made]
    await client.aclose()


def new_key(records: Records, file_id: uuid.UUID, version: int = 2) -> ScopeKey:
    key = ScopeKey.generate(file_id, Scope.CLINICAL, version)
    records.adopt_keys({Scope.CLINICAL: key})  # as Sharing.rotate does after storing it
    return key


def others(task: asyncio.Task | None) -> list[asyncio.Task]:
    return [t for t in asyncio.all_tasks() if t is not task]


class TestRekey:
    async def test_every_committed_version_is_re_keyed_in_batches(self, fake, file):
        records, file_id, ids = file
        key = new_key(records, file_id)
        stats = RekeyStats()
        before = len(fake.calls)
        assert await Sharing(records).rekey(file_id, Scope.CLINICAL, key, stats=stats) == (5, 0)
        assert (stats.listed, stats.rekeyed, stats.skipped) == (5, 5, 0)
        # Headers only: no record, version history, metadata or content is fetched.
        assert sorted(set(fake.calls[before:])) == [("GET", "/v1/records/headers"),
                                                    ("POST", "/v1/records/rekey")]
        assert fake.calls.count(("GET", "/v1/records/headers")) == 3
        assert fake.rekey_batches == [2, 2, 1]
        for rid in ids:
            for info in await records.history(rid):  # verified and opened with key v2
                assert info.key_version == 2
        assert key_version(fake.records[ids[1]].versions[2].header) == 1  # pending: untouched
        # Nothing below version 2 is left: one page, nothing posted.
        assert await Sharing(records).rekey(file_id, Scope.CLINICAL, key) == (0, 0)
        assert fake.rekey_batches == [2, 2, 1]
        assert fake.calls.count(("GET", "/v1/records/headers")) == 4
        assert others(asyncio.current_task()) == []

    async def test_versions_under_a_key_this_device_lacks_are_skipped(self, fake, file):
        records, file_id, _ = file
        await Sharing(records).rekey(file_id, Scope.CLINICAL, new_key(records, file_id))
        fresh = Records(records.client, records.identity)  # knows key v1 only (kms)
        key = ScopeKey.generate(file_id, Scope.CLINICAL, 3)
        fresh.adopt_keys({Scope.CLINICAL: key})
        posted = list(fake.rekey_batches)
        assert await Sharing(fresh).rekey(file_id, Scope.CLINICAL, key) == (0, 5)
        assert fake.rekey_batches == posted

    async def test_a_refused_batch_stops_the_rotation_and_leaves_no_task(self, fake, file):
        records, file_id, _ = file
        fake.refuse_rekey_batch = 1
        with pytest.raises(Conflict):
            await Sharing(records).rekey(file_id, Scope.CLINICAL, new_key(records, file_id))
        assert fake.rekey_batches == [2, 2]  # the third batch is never sent
        assert others(asyncio.current_task()) == []

    @pytest.mark.parametrize("how", ["swapped", "wrap-signature"])
    async def test_a_header_that_does_not_verify_is_never_re_keyed(self, fake, file, how):
        """It is reported and skipped; every other record is re-keyed (one bad record
        never leaves the rest on a key the leaver holds)."""
        records, file_id, ids = file
        first, second = (fake.records[r].versions[1] for r in ids[2:])
        if how == "swapped":  # each header stored under the other record
            first.header, second.header = second.header, first.header
            bad = set(ids[2:])
        else:
            raw = bytearray(fake.header_bytes(ids[2]))
            raw[400] ^= 1
            first.header = sharing.b64e(bytes(raw))
            bad = {ids[2]}
        stats = RekeyStats()
        rekeyed, skipped = await Sharing(records).rekey(
            file_id, Scope.CLINICAL, new_key(records, file_id), stats=stats)
        assert skipped == len(bad) and {u.record_id for u in stats.unreadable} == bad
        assert all(key_version(fake.records[r].versions[1].header) == 1 for r in bad)
        assert all(key_version(fake.records[r].versions[1].header) == 2
                   for r in set(ids) - bad)
        assert rekeyed == 5 - len(bad)
        assert others(asyncio.current_task()) == []
