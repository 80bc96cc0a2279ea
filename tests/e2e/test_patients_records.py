"""Patients and records end to end: the `ecrin` CLI and the SDK against the four services.

What a practitioner does (patients, every record kind, search variants, versions,
history, delete), then what a malicious operator does directly in the records database
(swapped content or header rows, an older version served, a dropped content row), what
another practice can reach (404 everywhere), what the servers keep (canaries in no
database and no log), and 32 clients writing at once (no 5xx).
"""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from datetime import UTC, date, datetime

import httpx
import pytest
from ecrin_client import IntegrityError, InvalidInput, Records
from ecrin_client.kine import PatientIdentity, RecordMetadata, SessionNote

from tests.e2e.records_support import (
    Practitioner,
    ServiceDatabase,
    content_files,
    database_dumps,
    drop_content_row,
    logs,
    practitioner,
)

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]

PDF = b"%PDF-1.4\n% ordonnance\n" + bytes(range(256)) * 40
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(256)) * 30
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 20


@pytest.fixture(scope="module")
def kine(stack, tmp_path_factory) -> Practitioner:
    return practitioner(stack.url("gateway"), tmp_path_factory.mktemp("kine"))


@pytest.fixture(scope="module")
def other_kine(stack, tmp_path_factory) -> Practitioner:
    return practitioner(stack.url("gateway"), tmp_path_factory.mktemp("other-kine"))


@pytest.fixture(scope="module")
def records_db(stack) -> ServiceDatabase:
    return ServiceDatabase(stack.database_urls["records-api"])


def metadata(title: str, kind: str, content: bytes, content_type: str = "application/json"
             ) -> RecordMetadata:
    return RecordMetadata(title=title, kind=kind, content_type=content_type, size=len(content),
                          created_at=datetime.now(UTC))


def note(text: str) -> bytes:
    return SessionNote(date=date(2026, 3, 2), acts=["AMK 7.5"], pain=3, notes=text).to_bytes()


class TestPractitionerFlow:
    def test_patients_every_record_kind_versions_history_and_delete(self, kine, tmp_path):
        marie = kine.ok("patient", "create", "--name", "Marie Dupönt", "--birth-date",
                        "1984-02-29", "--ins", "2840275123456 24", "--phone", "0601020304")
        paul = kine.ok("patient", "create", "--name", "Paul Martin-Durand", "--birth-date",
                       "1951-11-11")
        assert {p["file_id"] for p in kine.ok("patient", "list")} == {marie["file_id"],
                                                                      paul["file_id"]}
        for query in ("Dupont", "DUPONT", "Dupönt"):
            found = kine.ok("patient", "list", "--search", query)
            assert [p["file_id"] for p in found] == [marie["file_id"]], query
        assert kine.ok("patient", "show", "dupont")["identity"]["phone"] == "0601020304"

        async def more_searches():  # the same searches through the SDK, without a process each
            async with kine.client() as client:
                _, patients = await kine.unlocked(client)
                for query, names in (("marie dupont", ["Marie Dupönt"]),
                                     ("2 84 02 75 123 456 24", ["Marie Dupönt"]),
                                     ("1984-02-29", ["Marie Dupönt"]),
                                     ("durand", ["Paul Martin-Durand"]), ("Lefebvre", [])):
                    assert [p.name for p in await patients.list(query)] == names, query
                return (await patients.get(paul["file_id"])).name

        assert asyncio.run(more_searches()) == "Paul Martin-Durand"

        session = kine.ok("record", "note", "dupont", "--kind", "session-note", "--date",
                          "2026-03-02", "--act", "AMK 7.5", "--act", "IFO", "--pain", "6",
                          "--notes", "Genou droit, flexion 95°")
        bilan = kine.ok("record", "note", marie["file_id"], "--kind", "bilan", "--motif",
                        "Entorse LLI", "--prescription-ref", "Dr Roux 2026-02-27",
                        "--anamnesis", "Chute au ski", "--exam", "Laxité stade 1",
                        "--diagnostic", "Déficit de flexion", "--objective", "Flexion 130°",
                        "--objective", "Reprise du sport", "--plan", "10 séances")
        program = kine.ok("record", "note", marie["file_id"], "--kind", "exercise-program",
                          "--exercise", "Squat contre le mur;3;10;2x/jour",
                          "--exercise", "Vélo;1;1;20 min/jour")
        (tmp_path / "note.json").write_text(json.dumps(
            {"date": "2026-03-05", "acts": ["AMK 8"], "pain": 2, "notes": "Progrès"}))
        from_json = kine.ok("record", "note", marie["file_id"], "--from-json",
                            str(tmp_path / "note.json"), "--title", "Séance 2")
        documents = {}
        for name, data, kind in (("ordonnance.pdf", PDF, "prescription"),
                                 ("radio.jpg", JPEG, "imaging"), ("courrier.png", PNG, "letter")):
            (tmp_path / name).write_bytes(data)
            documents[name] = kine.ok("record", "add", marie["file_id"], str(tmp_path / name),
                                      "--kind", kind, "--title", name)
        assert session["scope"] == bilan["scope"] == "clinical"
        assert program["scope"] == documents["ordonnance.pdf"]["scope"] == "shared"

        listed = kine.ok("record", "list", marie["file_id"])
        assert sorted(r["metadata"]["kind"] for r in listed) == sorted([
            "patient-identity", "session-note", "session-note", "bilan", "exercise-program",
            "prescription", "imaging", "letter"])
        assert {r["metadata"]["title"] for r in listed} >= {"Séance 2", "ordonnance.pdf"}

        got = kine.ok("record", "get", marie["file_id"], bilan["record_id"])
        assert got["content"]["objectives"] == ["Flexion 130°", "Reprise du sport"]
        got = kine.ok("record", "get", marie["file_id"], program["record_id"])
        assert got["content"]["exercises"][0] == {"name": "Squat contre le mur", "sets": 3,
                                                  "reps": 10, "frequency": "2x/jour",
                                                  "instructions": ""}
        assert from_json["metadata"]["title"] == "Séance 2"
        kine.ok("record", "get", marie["file_id"], documents["radio.jpg"]["record_id"],
                "-o", str(tmp_path / "radio-back.jpg"))
        assert (tmp_path / "radio-back.jpg").read_bytes() == JPEG

        v2 = kine.ok("record", "note", marie["file_id"], "--version-of", session["record_id"],
                     "--date", "2026-03-02", "--act", "AMK 7.5", "--pain", "5",
                     "--notes", "Genou droit, flexion 100° (corrigé)")
        assert (v2["record_id"], v2["version"]) == (session["record_id"], 2)
        history = kine.ok("record", "history", marie["file_id"], session["record_id"])
        assert [h["version"] for h in history] == [2, 1]
        wrong_patient = kine.ecrin("record", "get", paul["file_id"], session["record_id"])
        assert wrong_patient.code == 4

        pdf_id = documents["ordonnance.pdf"]["record_id"]
        assert kine.ok("record", "delete", marie["file_id"], pdf_id)["deleted"] == pdf_id
        assert pdf_id not in {r["record_id"] for r in kine.ok("record", "list",
                                                               marie["file_id"])}
        assert kine.ecrin("record", "get", marie["file_id"], pdf_id).code == 4


async def _patient_with(kine: Practitioner, client, name: str) -> tuple[Records, str]:
    records, patients = await kine.unlocked(client)
    patient = await patients.create(PatientIdentity(name=name, birth_date=date(1990, 1, 1)))
    return records, patient.file_id


def _upload_id(db: ServiceDatabase, record_id: str, version: int = 1):
    (upload,), = db.rows("SELECT content_upload_id FROM record_versions WHERE record_id = ? "
                         "AND version = ?", uuid.UUID(record_id), version)
    return upload if isinstance(upload, str) else uuid.UUID(str(upload))


def _swap(db: ServiceDatabase, table: str, column: str, key: str, a, b, extra: str = "",
          *params) -> None:
    (va,), = db.rows(f"SELECT {column} FROM {table} WHERE {key} = ?{extra}", a, *params)
    (vb,), = db.rows(f"SELECT {column} FROM {table} WHERE {key} = ?{extra}", b, *params)
    db.execute(f"UPDATE {table} SET {column} = ? WHERE {key} = ?{extra}", vb, a, *params)
    db.execute(f"UPDATE {table} SET {column} = ? WHERE {key} = ?{extra}", va, b, *params)


class TestTampering:
    def test_swapped_content_rows_are_refused(self, kine, records_db, tmp_path):
        async def flow():
            async with kine.client() as client:
                records, file_id = await _patient_with(kine, client, "Swap Contenu")
                a = await records.create(file_id, "clinical", metadata("A", "session-note",
                                                                       note("a")), note("a"))
                b = await records.create(file_id, "clinical", metadata("B", "session-note",
                                                                       note("b")), note("b"))
                return file_id, a.record_id, b.record_id

        file_id, a, b = asyncio.run(flow())
        ua, ub = _upload_id(records_db, a), _upload_id(records_db, b)
        _swap(records_db, "content_chunks", "data", "upload_id", ua, ub, " AND seq = ?", 0)
        run = kine.ecrin("record", "get", file_id, a, "--json")
        assert run.code == 7 and run.json()["error"] == "IntegrityError"
        assert "content" not in run.stdout.replace('"error"', "")  # no plaintext shown
        out = tmp_path / "a.json"
        assert kine.ecrin("record", "get", file_id, b, "-o", str(out)).code == 7
        assert not out.exists() and not list(tmp_path.glob(".a.json*"))

    def test_swapped_header_rows_are_refused(self, kine, records_db):
        async def flow():
            async with kine.client() as client:
                records, file_id = await _patient_with(kine, client, "Swap Entete")
                a = await records.create(file_id, "clinical", metadata("A", "session-note",
                                                                       note("a")), note("a"))
                b = await records.create(file_id, "clinical", metadata("B", "session-note",
                                                                       note("b")), note("b"))
                ra, rb = uuid.UUID(a.record_id), uuid.UUID(b.record_id)
                _swap(records_db, "record_versions", "header", "record_id", ra, rb)
                for attempt in (records.get(a.record_id), records.read(b.record_id)):
                    with pytest.raises(IntegrityError):
                        await attempt
                # A listing shows neither and reports both (one bad record blocks nothing).
                listed = {r.record_id for r in await records.list(file_id)}
                assert not listed & {a.record_id, b.record_id}
                assert {a.record_id, b.record_id} <= {u.record_id for u in records.unreadable}
                # Whole rows swapped (header and metadata together) are still refused.
                _swap(records_db, "record_versions", "metadata_ciphertext", "record_id", ra, rb)
                with pytest.raises(IntegrityError):
                    await records.read(a.record_id)

        asyncio.run(flow())

    def test_an_older_version_served_is_refused(self, kine, records_db):
        async def flow():
            async with kine.client() as client:
                records, file_id = await _patient_with(kine, client, "Version Ancienne")
                first = await records.create(file_id, "clinical", metadata(
                    "v1", "session-note", note("v1")), note("v1"))
                await records.add_version(first.record_id, metadata(
                    "v2", "session-note", note("v2")), note("v2"))
                return file_id, first.record_id

        file_id, record_id = asyncio.run(flow())
        rid = uuid.UUID(record_id)
        records_db.execute("UPDATE records SET current_version = 1 WHERE id = ?", rid)
        run = kine.ecrin("record", "get", file_id, record_id)
        assert run.code == 7 and "older" in run.stderr and "v1" not in run.stdout
        listing = kine.ecrin("record", "list", file_id, "--json")
        assert listing.code == 0 and record_id not in listing.stdout  # skipped...
        assert record_id in listing.stderr and "older" in listing.stderr  # ...and reported
        # The newest version claimed, but the older version's header served under it.
        records_db.execute("UPDATE records SET current_version = 2 WHERE id = ?", rid)
        (old,), = records_db.rows("SELECT header FROM record_versions WHERE record_id = ? "
                                  "AND version = 1", rid)
        records_db.execute("UPDATE record_versions SET header = ? WHERE record_id = ? AND "
                           "version = 2", old, rid)
        assert kine.ecrin("record", "get", file_id, record_id).code == 7

    def test_a_dropped_content_row_is_refused(self, kine, records_db, stack, tmp_path):
        document = b"%PDF-1.5\n" + bytes(3 << 20)

        async def flow():
            async with kine.client() as client:
                records, file_id = await _patient_with(kine, client, "Ligne Perdue")
                (tmp_path / "scan.pdf").write_bytes(document)
                info = await records.create(file_id, "clinical", metadata(
                    "scan", "imaging", document, "application/pdf"), tmp_path / "scan.pdf")
                return file_id, info.record_id

        file_id, record_id = asyncio.run(flow())
        drop_content_row(stack, records_db, _upload_id(records_db, record_id), 1)
        out = tmp_path / "back.pdf"
        run = kine.ecrin("record", "get", file_id, record_id, "-o", str(out))
        assert run.code == 7, run.stderr
        assert not out.exists() and not list(tmp_path.glob(".back.pdf*"))


class TestIsolation:
    def test_another_practice_gets_404_on_every_route(self, kine, other_kine, records_db):
        async def flow():
            async with kine.client() as client:
                records, file_id = await _patient_with(kine, client, "Autre Cabinet")
                info = await records.create(file_id, "clinical", metadata(
                    "secret", "session-note", note("x")), note("x"))
                return file_id, info.record_id

        file_id, record_id = asyncio.run(flow())
        upload = str(_upload_id(records_db, record_id))

        async def probe():
            async with other_kine.client() as client:
                t = client.transport
                statuses = {}
                routes = [("GET", f"/v1/files/{file_id}"),
                          ("GET", f"/v1/keyrings/{file_id}/entries"),
                          ("GET", f"/v1/records?file_id={file_id}"),
                          ("GET", f"/v1/records?file_id={file_id}&scope=administrative")]
                for rid in (record_id, upload):  # the record, and a guessed content blob id
                    routes += [("GET", f"/v1/records/{rid}"),
                               ("GET", f"/v1/records/{rid}/versions"),
                               ("GET", f"/v1/records/{rid}/versions/1"),
                               ("GET", f"/v1/records/{rid}/versions/1/content"),
                               ("DELETE", f"/v1/records/{rid}")]
                for method, path in routes:
                    response = await t._authorised(method, path, auth=True,
                                                   headers={"if-match": '"v1"'})
                    statuses[(method, path)] = response.status_code
                for rid in (record_id, upload):
                    response = await t._authorised(
                        "PUT", f"/v1/records/{rid}/versions/1/content", auth=True,
                        content=b"x" * 300,
                        headers={"content-type": "application/octet-stream"})
                    statuses[("PUT", rid)] = response.status_code
                    response = await t._authorised(
                        "POST", f"/v1/records/{rid}/versions", auth=True,
                        headers={"if-match": '"v1"'},
                        json={"header": base64.urlsafe_b64encode(bytes(410)).decode()
                              .rstrip("="), "metadata_ciphertext": "AAAA",
                              "content_length": 300})
                    statuses[("POST", rid)] = response.status_code
                return statuses

        statuses = asyncio.run(probe())
        assert {k: v for k, v in statuses.items() if v != 404} == {}


CANARY = uuid.uuid4().hex[:12]


class TestCanaries:
    def test_names_titles_and_content_reach_no_database_and_no_log(self, stack, kine,
                                                                   tmp_path):
        name, title, text = (f"Canarinom{CANARY}", f"Canarititre{CANARY}",
                             f"Canaricontenu{CANARY}")
        patient = kine.ok("patient", "create", "--name", f"Jeanne {name}", "--birth-date",
                          "1977-07-07", "--email", f"{name}@example.fr")
        kine.ok("record", "note", patient["file_id"], "--title", title, "--notes", text)
        (tmp_path / "doc.pdf").write_bytes(b"%PDF-1.4\n" + text.encode() * 50)
        kine.ok("record", "add", patient["file_id"], str(tmp_path / "doc.pdf"), "--title",
                title)
        # Over 256 KiB: kept as files in the records API's content directory.
        stored_before = len(content_files(stack))
        (tmp_path / "scan.pdf").write_bytes(b"%PDF-1.4\n" + text.encode() * 40_000)
        kine.ok("record", "add", patient["file_id"], str(tmp_path / "scan.pdf"), "--title",
                title)
        assert len(content_files(stack)) > stored_before
        assert kine.ok("patient", "list", "--search", name)[0]["file_id"] == patient["file_id"]
        canaries = [c.encode() for c in (name, title, text, name.lower(), CANARY)]
        dumps, service_logs = database_dumps(stack), logs(stack)
        for blob in dumps + service_logs:
            for canary in canaries:
                assert canary not in blob.lower()


class TestConcurrentWriters:
    def test_32_clients_writing_at_once_get_no_5xx(self, kine):
        statuses: list[int] = []

        class Recording(httpx.AsyncHTTPTransport):
            async def handle_async_request(self, request):
                response = await super().handle_async_request(request)
                statuses.append(response.status_code)
                return response

        async def flow():
            async with kine.client() as first:
                records, file_id = await _patient_with(kine, first, "Trente Deux")
                identity = records.identity

            async def writer(n: int) -> list[str]:
                async with kine.client(transport=Recording()) as client:
                    mine = Records(client, identity)
                    written = []
                    for i in range(2):
                        content = note(f"writer {n} note {i}")
                        info = await mine.create(file_id, "clinical", metadata(
                            f"w{n}-{i}", "session-note", content), content)
                        written.append(info.record_id)
                    return written

            results = await asyncio.gather(*(writer(n) for n in range(32)),
                                           return_exceptions=True)
            async with kine.client() as client:
                records, _ = await kine.unlocked(client)
                listed = await records.list(file_id, "clinical")
            return results, listed

        results, listed = asyncio.run(flow())
        errors = [r for r in results if isinstance(r, BaseException)]
        assert not [s for s in statuses if s >= 500], sorted(set(statuses))
        assert errors == []
        assert len(listed) == 64


class TestLimits:
    def test_content_over_the_limit_is_refused_cleanly(self, kine, tmp_path):
        big = tmp_path / "big.pdf"
        with open(big, "wb") as f:  # sparse: one byte over 200 MiB, zeros after the magic
            f.write(b"%PDF-1.4\n")
            f.truncate((200 << 20) + 1)

        async def flow():
            async with kine.client() as client:
                records, file_id = await _patient_with(kine, client, "Trop Grand")
                with pytest.raises(InvalidInput) as refused:
                    await records.create(file_id, "clinical", metadata(
                        "big", "imaging", b"", "application/pdf").model_copy(
                            update={"size": (200 << 20) + 1}), big)
                return refused.value, await records.list(file_id, "clinical")

        error, listed = asyncio.run(flow())
        assert error.status == 413
        assert listed == []
