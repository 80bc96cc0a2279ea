"""Records across implementations, through the real services: what the Python SDK writes the
TypeScript SDK reads, and the reverse — patient identities found by blind index, a note, a
document large enough to be streamed, a version history.

Each pair is one account on two devices (one Python, one TypeScript), so everything rests on
bytes: keyring entries, headers, metadata and content ciphertexts, search tokens.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest
from ecrin_client.kine import PatientIdentity, RecordMetadata

from tests.e2ee_js.cross_devices import PyDevice, TsDevice, kdf_env, sha256

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]

NOTE = '{"date":"2026-03-02","acts":["AMK 7.5"],"pain":3,"notes":"épaule, ça va mieux"}'.encode()
#: Over the 256 KiB inline limit and several 64 KiB chunks: uploaded and read as streams.
DOCUMENT_SIZE = 700_001


def meta(title: str, kind: str, size: int,
         content_type: str = "application/json") -> RecordMetadata:
    return RecordMetadata(title=title, kind=kind, content_type=content_type, size=size,
                          created_at=dt.datetime.now(dt.UTC))


@pytest.fixture(scope="module", autouse=True)
def _cheap_kdf() -> None:
    kdf_env()


@pytest.fixture(scope="module")
def written_by_python(stack, tmp_path_factory):
    """A Python device writes a patient file, a note (then a second version) and a document."""
    home = tmp_path_factory.mktemp("py-writer")
    py = PyDevice.signup(stack.url("gateway"), home / "py")
    document = os.urandom(DOCUMENT_SIZE)
    source = home / "scan.pdf"
    source.write_bytes(document)

    async def write(records):
        patient = await py.patients(records).create(PatientIdentity(
            name="Élodie Lefèvre-Brûlé", birth_date=dt.date(1984, 7, 14), ins="284077512345607"))
        note = await records.create(patient.file_id, "clinical", meta("Bilan", "bilan", len(NOTE)),
                                    NOTE)
        await records.add_version(note.record_id, meta("Bilan (corrigé)", "bilan", 3), b"{}\n")
        scan = await records.create(patient.file_id, "shared",
                                    meta("Ordonnance", "prescription", DOCUMENT_SIZE,
                                         "application/pdf"), source)
        doomed = await records.create(patient.file_id, "clinical", meta("Brouillon", "bilan", 2),
                                      b"{}")
        return patient.file_id, note.record_id, scan.record_id, doomed.record_id

    file_id, note_id, scan_id, doomed_id = py.run(write)
    ts = py.second_device(home / "ts")
    return ts, file_id, note_id, scan_id, sha256(document), py, doomed_id


class TestPythonWritesTypeScriptReads:
    def test_finds_the_patient_by_blind_index(self, written_by_python):
        ts, file_id, *_ = written_by_python
        for text in ("lefevre", "BRULE", "élodie LEFEVRE brulé", "1984-07-14",
                     "2 84 07 75 123 456 07"):
            found = ts.run("search", text=text)
            assert [p["file_id"] for p in found] == [file_id], text
            assert found[0]["name"] == "Élodie Lefèvre-Brûlé"
        assert ts.run("search", text="Martin") == []

    def test_reads_the_note_and_its_history(self, written_by_python):
        ts, _, note_id, *_ = written_by_python
        first = ts.run("read-record", record_id=note_id, version=1)
        assert first["text"].encode() == NOTE
        assert first["metadata"]["title"] == "Bilan"
        latest = ts.run("read-record", record_id=note_id)
        assert (latest["version"], latest["text"]) == (2, "{}\n")
        assert [v["version"] for v in ts.run("history", record_id=note_id)] == [2, 1]

    def test_streams_the_document(self, written_by_python):
        ts, _, _, scan_id, digest, *_ = written_by_python
        read = ts.run("read-record", record_id=scan_id)
        assert (read["sha256"], read["metadata"]["size"]) == (digest, DOCUMENT_SIZE)

    def test_lists_every_record_and_verifies_the_audit(self, written_by_python):
        ts, file_id, note_id, scan_id, *_ = written_by_python
        listed = ts.run("list-records", file_id=file_id)
        assert listed["unreadable"] == []
        assert {note_id, scan_id} <= {r["record_id"] for r in listed["records"]}
        assert ts.run("audit", file_id=file_id)["verified"] is True

    def test_deletes_a_record_python_then_no_longer_finds(self, written_by_python):
        ts, file_id, *_, py, doomed_id = written_by_python
        ts.run("delete-record", record_id=doomed_id)

        async def listing(records):
            return [r.record_id for r in await records.list(file_id)]

        assert doomed_id not in py.run(listing)
        assert ts.refused("read-record", record_id=doomed_id)["error"] == "NotFound"


@pytest.fixture(scope="module")
def written_by_typescript(stack, tmp_path_factory):
    """A TypeScript device writes a patient file, a note (then a version) and a document."""
    home = tmp_path_factory.mktemp("ts-writer")
    ts = TsDevice.signup(stack.url("gateway"), home / "ts")
    file_id = ts.run("create-patient", name="Noël Ørsted", birth_date="2011-02-28")["file_id"]
    note = ts.run("create-record", file_id=file_id, scope="clinical", title="Séance",
                  kind="session-note", text=NOTE.decode())
    ts.run("add-version", record_id=note["record_id"], title="Séance (v2)", kind="session-note",
           text='{"notes":"v2"}')
    scan = ts.run("create-record", file_id=file_id, scope="shared", title="IRM", kind="imaging",
                  content_type="application/pdf", size=DOCUMENT_SIZE, seed="cross")
    py = ts.second_device(home / "py")
    return py, file_id, note["record_id"], scan["record_id"], scan["sha256"], home


class TestTypeScriptWritesPythonReads:
    def test_finds_the_patient_by_blind_index(self, written_by_typescript):
        py, file_id, *_ = written_by_typescript

        async def search(records, text):
            return [(p.file_id, p.name) for p in await py.patients(records).list(text)]

        for text in ("noel", "ORSTED", "2011-02-28"):
            assert py.run(lambda r, t=text: search(r, t)) == [(file_id, "Noël Ørsted")], text

    def test_reads_the_note_and_its_history(self, written_by_typescript):
        py, _, note_id, *_ = written_by_typescript

        async def read(records):
            first = await records.read(note_id, version=1)
            latest = await records.read(note_id)
            history = await records.history(note_id)
            return first, latest, [v.version for v in history]

        (info, content), (latest, latest_content), versions = py.run(read)
        assert (content, info.metadata.title) == (NOTE, "Séance")
        assert info.metadata.kind == "session-note"
        assert (latest.version, latest_content) == (2, b'{"notes":"v2"}')
        assert versions == [2, 1]

    def test_streams_the_document(self, written_by_typescript):
        py, _, _, scan_id, digest, home = written_by_typescript
        target = Path(home) / "downloaded.pdf"

        async def download(records):
            return await records.download(scan_id, target)

        info = py.run(download)
        assert info.metadata.size == DOCUMENT_SIZE
        assert sha256(target.read_bytes()) == digest

    def test_lists_every_record(self, written_by_typescript):
        py, file_id, note_id, scan_id, *_ = written_by_typescript

        async def listing(records):
            return [r.record_id for r in await records.list(file_id)], records.unreadable

        ids, unreadable = py.run(listing)
        assert unreadable == []
        assert {note_id, scan_id} <= set(ids)
