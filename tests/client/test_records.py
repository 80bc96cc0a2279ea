"""The SDK's patients and records against the fake services: round trips, search, versions,
and a server that tampers (every case refused with IntegrityError, nothing written)."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest
from ecrin_client import (
    EcrinClient,
    IntegrityError,
    InvalidInput,
    NotFound,
    Patients,
    Profile,
    Records,
)
from ecrin_client import records as records_module
from ecrin_client.encoding import b64e
from ecrin_client.kine import (
    Bilan,
    ExerciseProgram,
    PatientIdentity,
    RecordMetadata,
    SessionNote,
    parse_note,
    sniff_content_type,
)

from tests.client.conftest import EMAIL, PASSPHRASE
from tests.client.fake_records import FakeRecords
from tests.client.fake_server import URL


@pytest.fixture
def fake() -> FakeRecords:
    return FakeRecords()


async def unlocked(fake: FakeRecords, profile: Profile, *, signup: bool = True
                   ) -> tuple[EcrinClient, Records, Patients]:
    client = EcrinClient(URL, profile, transport=fake.transport())
    if signup:
        await client.signup(EMAIL, PASSPHRASE, "practitioner")
    await client.login(EMAIL, PASSPHRASE)
    records = Records(client, await client.unlock(PASSPHRASE))
    return client, records, Patients(records)


@pytest.fixture
async def kine(fake, device_a):
    client, records, patients = await unlocked(fake, device_a)
    yield records, patients
    await client.aclose()


def meta(title: str, kind: str, content: bytes, content_type: str = "application/json"
         ) -> RecordMetadata:
    return RecordMetadata(title=title, kind=kind, content_type=content_type, size=len(content),
                          created_at=dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC))


NOTE = SessionNote(date=dt.date(2026, 3, 2), acts=["AMK 7.5"], pain=4, notes="Genou").to_bytes()
MARIE = PatientIdentity(name="Marie Dupönt", birth_date=dt.date(1984, 2, 29),
                        ins="2840275123456 24")


class TestPatients:
    async def test_the_server_gets_tokens_never_the_identity(self, fake, kine):
        _, patients = kine
        patient = await patients.create(MARIE)
        stored = fake.files[patient.file_id]
        assert stored["state"] == "active" and len(stored["tokens"]) == 5
        blob = repr(fake.files) + repr(fake.records) + repr(fake.keyrings)
        # Whole values only: a three-letter piece ("Dup") turns up by chance in a few KB of
        # base64 (about one run in fifty); pieces of the name are checked as tokens below.
        for secret in ("Dupönt", "Dupont", "dupont", "Marie", "marie", "1984-02-29",
                       "2840275123456"):
            assert secret not in blob
        pieces = {"dup", "dupo", "dupon", "dupont", "mar", "mari", "marie", "1984"}
        assert not {token.lower() for token in stored["tokens"]} & pieces

    async def test_search_finds_case_and_accent_variants(self, kine):
        _, patients = kine
        marie = await patients.create(MARIE)
        await patients.create(PatientIdentity(name="Paul Durand", birth_date=dt.date(1950, 1, 1)))
        for query in ("Dupont", "DUPONT", "Dupönt", "marie  dupont", "2 84 02 75 123 456 24",
                      "1984-02-29"):
            assert [p.file_id for p in await patients.list(query)] == [marie.file_id], query
        assert await patients.list("Martin") == []
        assert len(await patients.list()) == 2
        assert (await patients.get("dupont")).identity == MARIE
        assert (await patients.get(marie.file_id)).identity == MARIE
        with pytest.raises(NotFound):
            await patients.get("Martin")

    async def test_an_ambiguous_reference_asks_for_the_file_id(self, kine):
        _, patients = kine
        await patients.create(MARIE)
        await patients.create(MARIE)
        with pytest.raises(InvalidInput, match="2 patients match"):
            await patients.get("Dupont")


class TestRecords:
    async def test_note_round_trip_history_and_delete(self, fake, kine):
        records, patients = kine
        file_id = (await patients.create(MARIE)).file_id
        info = await records.create(file_id, "clinical", meta("Séance 1", "session-note", NOTE),
                                    NOTE)
        read_info, content = await records.read(info.record_id)
        assert content == NOTE and read_info.metadata.title == "Séance 1"
        second = SessionNote(date=dt.date(2026, 3, 2), pain=2).to_bytes()
        v2 = await records.add_version(info.record_id, meta("Séance 1 bis", "session-note",
                                                            second), second)
        assert v2.version == 2
        assert [h.version for h in await records.history(info.record_id)] == [2, 1]
        assert (await records.read(info.record_id))[1] == second
        assert (await records.read(info.record_id, version=1))[1] == NOTE
        await records.delete(info.record_id)
        assert [r.metadata.kind for r in await records.list(file_id)] == ["patient-identity"]

    async def test_a_document_streams_up_and_down(self, kine, tmp_path):
        records, patients = kine
        file_id = (await patients.create(MARIE)).file_id
        data = b"%PDF-1.7\n" + os.urandom(300_000)
        (tmp_path / "in.pdf").write_bytes(data)
        info = await records.create(file_id, "shared", meta("Ordonnance", "prescription", data,
                                                            "application/pdf"),
                                    tmp_path / "in.pdf")
        await records.download(info.record_id, tmp_path / "out.pdf")
        assert (tmp_path / "out.pdf").read_bytes() == data
        assert not list(tmp_path.glob("ecrin-upload-*"))

    async def test_an_upload_is_sent_again_after_a_token_refresh(self, fake, kine, tmp_path):
        records, patients = kine
        file_id = (await patients.create(MARIE)).file_id
        data = b"\x89PNG\r\n\x1a\n" + os.urandom(200_000)
        (tmp_path / "in.png").write_bytes(data)
        fake.expire_before_upload = True
        info = await records.create(file_id, "clinical", meta("Radio", "imaging", data,
                                                              "image/png"), tmp_path / "in.png")
        await records.download(info.record_id, tmp_path / "out.png")
        assert (tmp_path / "out.png").read_bytes() == data


async def _two_notes(records: Records, patients: Patients) -> tuple[str, str, str]:
    file_id = (await patients.create(MARIE)).file_id
    a = await records.create(file_id, "clinical", meta("A", "session-note", NOTE), NOTE)
    b = await records.create(file_id, "clinical", meta("B", "session-note", NOTE), NOTE)
    return file_id, a.record_id, b.record_id


class TestTamperingServer:
    async def test_flipped_content_writes_nothing(self, fake, kine, tmp_path):
        records, patients = kine
        _, a, _ = await _two_notes(records, patients)
        version = fake.records[a].versions[1]
        assert version.content is not None
        version.content = version.content[:-1] + bytes([version.content[-1] ^ 1])
        with pytest.raises(IntegrityError):
            await records.read(a)
        with pytest.raises(IntegrityError):
            await records.download(a, tmp_path / "a.json")
        assert [p.name for p in tmp_path.iterdir()] == ["a"]  # the profile folder only

    @pytest.mark.parametrize("where", [0, 300_000, -1])
    async def test_a_document_altered_anywhere_writes_nothing(self, fake, kine, tmp_path,
                                                              where, monkeypatch):
        """Downloads hand the decrypting thread batches of chunks and read the next batch
        ahead: a failure in the first, a middle or the last chunk stops cleanly (the
        batch being read is settled before the stream closes) and writes nothing."""
        monkeypatch.setattr(records_module, "DOWNLOAD_BATCH", 128 << 10)  # several batches
        records, patients = kine
        file_id = (await patients.create(MARIE)).file_id
        data = b"%PDF-1.7\n" + os.urandom(700_000)
        (tmp_path / "in.pdf").write_bytes(data)
        info = await records.create(file_id, "clinical", meta("Scanner", "imaging", data,
                                                              "application/pdf"),
                                    tmp_path / "in.pdf")
        version = fake.records[info.record_id].versions[1]
        assert version.content is not None
        flipped = bytearray(version.content)
        flipped[where] ^= 1
        version.content = bytes(flipped)
        fake.content_piece = 64 << 10
        with pytest.raises(IntegrityError):
            await records.download(info.record_id, tmp_path / "out.pdf")
        assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "in.pdf"]

    async def test_swapped_contents_headers_or_whole_versions_are_refused(self, fake, kine):
        records, patients = kine
        file_id, a, b = await _two_notes(records, patients)
        va, vb = fake.records[a].versions[1], fake.records[b].versions[1]
        va.content, vb.content = vb.content, va.content
        with pytest.raises(IntegrityError):
            await records.read(a)
        va.content, vb.content = vb.content, va.content
        va.header, vb.header = vb.header, va.header
        for attempt in (records.get(a), records.history(b)):
            with pytest.raises(IntegrityError):
                await attempt
        # A listing reports and skips the swapped records, and shows neither.
        listed = {r.record_id for r in await records.list(file_id)}
        assert a not in listed and b not in listed
        assert {u.record_id for u in records.unreadable} == {a, b}
        va.metadata_ciphertext, vb.metadata_ciphertext = vb.metadata_ciphertext, \
            va.metadata_ciphertext
        with pytest.raises(IntegrityError):
            await records.get(a)

    async def test_a_small_record_is_read_with_its_content_inline(self, fake, kine):
        records, patients = kine
        _, a, _ = await _two_notes(records, patients)
        before = fake.inline_reads
        info, data = await records.read(a)
        assert data == NOTE and fake.inline_reads == before + 1

    async def test_truncated_or_extended_content_is_refused(self, fake, kine):
        records, patients = kine
        _, a, b = await _two_notes(records, patients)
        fake.records[a].versions[1].content = fake.records[a].versions[1].content[:-17]
        fake.records[b].versions[1].content += b"\0" * 17
        for record_id in (a, b):
            with pytest.raises(IntegrityError):
                await records.read(record_id)

    async def test_an_older_version_is_refused_even_on_a_new_session(self, fake, kine,
                                                                     device_a):
        records, patients = kine
        _, a, _ = await _two_notes(records, patients)
        await records.add_version(a, meta("A2", "session-note", NOTE), NOTE)
        fake.records[a].current_version = 1  # the server rolls the record back
        with pytest.raises(IntegrityError, match="older"):
            await records.get(a)
        client, again, _ = await unlocked(fake, device_a, signup=False)
        async with client:
            with pytest.raises(IntegrityError, match="older"):
                await again.read(a)
        assert device_a.seen_version(a) == 2

    async def test_a_version_served_under_another_number_is_refused(self, fake, kine):
        records, patients = kine
        _, a, _ = await _two_notes(records, patients)
        await records.add_version(a, meta("A2", "session-note", NOTE), NOTE)
        record = fake.records[a]
        record.versions[2].header = record.versions[1].header
        record.versions[2].metadata_ciphertext = record.versions[1].metadata_ciphertext
        with pytest.raises(IntegrityError):
            await records.get(a)

    async def test_a_header_signed_by_someone_else_is_refused(self, fake, kine):
        records, patients = kine
        _, a, _ = await _two_notes(records, patients)
        header = bytearray(fake.header_bytes(a))
        header[200] ^= 1  # inside the author signature
        fake.records[a].versions[1].header = b64e(bytes(header))
        with pytest.raises(IntegrityError):
            await records.get(a)

    async def test_a_forged_keyring_entry_is_refused(self, fake, device_a):
        client, records, patients = await unlocked(fake, device_a)
        async with client:
            file_id = (await patients.create(MARIE)).file_id
        for entry in fake.keyrings[file_id]:
            entry["signature"] = entry["signature"][:-4] + "AAAA"
        client, fresh, _ = await unlocked(fake, device_a, signup=False)
        async with client:
            assert await fresh.list(file_id) == []  # nothing unverified is shown...
            assert fresh.unreadable  # ...and every record is reported


class TestKineContent:
    def test_models_validate(self):
        with pytest.raises(InvalidInput, match="pain"):
            parse_note("session-note", {"date": "2026-03-02", "pain": 11})
        with pytest.raises(InvalidInput, match="exercises"):
            parse_note("exercise-program", {"date": "2026-03-02", "exercises": []})
        with pytest.raises(InvalidInput):
            parse_note("bilan", "{not json")
        bilan = parse_note("bilan", {"date": "2026-03-02", "motif": "Lombalgie",
                                     "objectives": ["Marche 30 min"]})
        assert isinstance(bilan, Bilan)
        program = parse_note("exercise-program", {"date": "2026-03-02", "exercises": [
            {"name": "Gainage", "sets": 3, "reps": 30, "frequency": "1x/jour"}]})
        assert isinstance(program, ExerciseProgram)
        with pytest.raises(ValueError, match="INS"):
            PatientIdentity(name="X", birth_date=dt.date(2000, 1, 1), ins="2840275123456 25")

    def test_only_pdf_jpeg_and_png_documents(self):
        assert sniff_content_type(b"%PDF-1.4\n") == "application/pdf"
        assert sniff_content_type(b"\xff\xd8\xff\xe0") == "image/jpeg"
        assert sniff_content_type(b"\x89PNG\r\n\x1a\n") == "image/png"
        with pytest.raises(InvalidInput):
            sniff_content_type(b"<html>")


def test_profile_versions_only_rise(tmp_path: Path):
    profile = Profile(tmp_path / "p")
    profile.remember_versions({"r": 3})
    profile.remember_versions({"r": 2, "s": 1})
    assert profile.seen_versions() == {"r": 3, "s": 1}
