"""Listing patients a page at a time, through the four real services (issue 20).

A file names its identity record; the device reads a page of identities with one keyring
request and one record request (``POST /v1/keyrings/batch``, ``POST /v1/records/batch``).
Shown here: the request count, the old files that name nothing (still listed), a server
that points a file at another file's record (refused, reported, the rest listed), another
practice (nothing), and the audit (one event per record read and per key released).
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter

import httpx
import pytest
from ecrin_client.kine import PatientIdentity

from tests.e2e.records_support import Practitioner, ServiceDatabase, practitioner

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]

NAMES = ["Alice Page", "Bruno Page", "Chloé Page", "Denis Page"]


class Counting(httpx.AsyncBaseTransport):
    """The real transport, counting requests by method and path area."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.seen: Counter[str] = Counter()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.seen[f"{request.method} {request.url.path}"] += 1
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


@pytest.fixture(scope="module")
def kine(stack, tmp_path_factory) -> Practitioner:
    return practitioner(stack.url("gateway"), tmp_path_factory.mktemp("kine-pages"))


@pytest.fixture(scope="module")
def other(stack, tmp_path_factory) -> Practitioner:
    return practitioner(stack.url("gateway"), tmp_path_factory.mktemp("other-pages"))


@pytest.fixture(scope="module")
def made(kine) -> dict[str, str]:
    """name -> file id, made through the SDK (each file names its identity record)."""

    async def go() -> dict[str, str]:
        async with kine.client() as client:
            _, patients = await kine.unlocked(client)
            out = {}
            for name in NAMES:
                patient = await patients.create(PatientIdentity(name=name,
                                                                birth_date="1990-01-02"))
                out[name] = patient.file_id
            return out

    return asyncio.run(go())


def listed(kine: Practitioner) -> tuple[dict[str, str | None], Counter[str], list]:
    """file id -> name listed, the requests made, the unreadable reported."""
    counting = Counting()

    async def go():
        async with kine.client(counting) as client:
            records, patients = await kine.unlocked(client)
            counting.seen.clear()  # what unlocking cost is not the listing's
            found = await patients.list()
            return {p.file_id: p.identity.name if p.identity else None for p in found}, \
                list(records.unreadable)

    names, unreadable = asyncio.run(go())
    return names, counting.seen, unreadable


class TestPageOfIdentities:
    def test_a_page_is_three_requests_whatever_the_number_of_patients(self, kine, made):
        names, seen, unreadable = listed(kine)
        assert {names[f] for f in made.values()} == set(NAMES)
        assert unreadable == []
        assert seen == Counter({"GET /v1/files": 1, "POST /v1/keyrings/batch": 1,
                                "POST /v1/records/batch": 1})

    def test_the_file_serves_the_identity_record_it_was_made_with(self, kine, made):
        page = kine.ok("patient", "list")
        by_file = {p["file_id"]: p for p in page}
        for file_id in made.values():
            assert by_file[file_id]["identity_record_id"]


class TestOldFiles:
    def test_a_file_naming_no_identity_record_is_still_listed(self, kine, made, stack):
        sharing = ServiceDatabase(stack.database_urls["sharing"])
        old = made["Bruno Page"]
        kept = sharing.rows("SELECT identity_record_id FROM patient_files WHERE id = ?",
                            uuid.UUID(old))[0][0]
        sharing.execute("UPDATE patient_files SET identity_record_id = NULL WHERE id = ?",
                        uuid.UUID(old))
        try:
            names, seen, unreadable = listed(kine)
        finally:
            sharing.execute("UPDATE patient_files SET identity_record_id = ? WHERE id = ?",
                            kept, uuid.UUID(old))
        assert names[old] == "Bruno Page" and unreadable == []
        assert seen["POST /v1/records/batch"] == 1
        assert seen["GET /v1/records"] == 1  # the old way, for that file only


class TestServerLies:
    def test_a_file_pointed_at_another_files_record_is_refused_and_reported(
            self, kine, made, stack):
        sharing = ServiceDatabase(stack.database_urls["sharing"])
        victim, donor = made["Chloé Page"], made["Denis Page"]
        rows = {str(_as_uuid(f)): r for f, r in sharing.rows(
            "SELECT id, identity_record_id FROM patient_files WHERE id IN (?, ?)",
            uuid.UUID(victim), uuid.UUID(donor))}
        sharing.execute("UPDATE patient_files SET identity_record_id = ? WHERE id = ?",
                        rows[donor], uuid.UUID(victim))
        try:
            names, _, unreadable = listed(kine)
        finally:
            sharing.execute("UPDATE patient_files SET identity_record_id = ? WHERE id = ?",
                            rows[victim], uuid.UUID(victim))
        assert names[victim] is None  # never Denis's identity shown as Chloé's file
        assert names[donor] == "Denis Page" and names[made["Alice Page"]] == "Alice Page"
        assert [u.record_id for u in unreadable] == [str(_as_uuid(rows[donor]))]


class TestAnotherPractice:
    def test_gets_no_record_and_no_key_and_its_refusals_are_audited(self, kine, other, made,
                                                                      stack):
        page = kine.ok("patient", "list")
        record_ids = [p["identity_record_id"] for p in page]
        file_ids = [p["file_id"] for p in page]

        async def go():
            async with other.client() as client:
                await client.unlock("records e2e passphrase")
                t = client.transport
                records = (await t.request("POST", "/v1/records/batch",
                                           json={"record_ids": record_ids})).json()
                keys = (await t.request("POST", "/v1/keyrings/batch", json={
                    "file_ids": file_ids, "scope": "administrative"})).json()
                return records, keys

        records, keys = asyncio.run(go())
        assert records == {"items": []} and keys == {"items": []}
        db = ServiceDatabase(stack.database_urls["records-api"])
        denied = db.rows("SELECT count(*) FROM audit_events WHERE actor = ? AND "
                         "outcome = 'denied' AND action = 'record.read'", other.account_id)
        assert denied[0][0] == len(record_ids)


class TestAudit:
    def test_each_record_read_and_key_released_is_one_event_in_its_scope_chain(
            self, kine, made, stack):
        records_db = ServiceDatabase(stack.database_urls["records-api"])
        kms_db = ServiceDatabase(stack.database_urls["kms"])
        file_id = made["Alice Page"]
        chain = f"file:{file_id}:administrative"
        count = "SELECT count(*) FROM audit_events WHERE chain = ? AND action = ?"
        reads = records_db.rows(count, chain, "record.content.read")[0][0]
        releases = kms_db.rows(count, chain, "keys.release")[0][0]
        listed(kine)
        assert records_db.rows(count, chain, "record.content.read")[0][0] == reads + 1
        assert kms_db.rows(count, chain, "keys.release")[0][0] == releases + 1


def _as_uuid(value) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


class TestInlineBudget:
    def test_an_answer_carries_at_most_4_mib_of_content_the_rest_to_download(self, kine, made):
        from ecrin_client.kine import RecordMetadata

        from tests.e2e.records_support import session_note_meta

        size = 240 << 10

        async def go():
            async with kine.client() as client:
                records, _ = await kine.unlocked(client)
                ids = []
                for i in range(18):
                    meta = session_note_meta(f"scan {i}", bytes(size))
                    meta = RecordMetadata(**{**meta.model_dump(), "kind": "document",
                                             "content_type": "application/pdf"})
                    info = await records.create(made["Alice Page"], "clinical", meta,
                                                bytes([i]) * size)
                    ids.append(info.record_id)
                body = (await client.transport.request(
                    "POST", "/v1/records/batch", json={"record_ids": ids})).json()
                return ids, body["items"]

        ids, items = asyncio.run(go())
        assert [i["record_id"] for i in items] == ids  # every record, in the order asked
        inline = [i for i in items if "content" in i]
        assert 0 < len(inline) < len(items)
        total = sum(len(i["content"]) * 3 // 4 for i in inline)
        assert total <= 4 << 20
