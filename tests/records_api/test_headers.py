"""``GET /v1/records/headers``: every committed version's header of a scope, for re-keying
after a rotation; keyset pages, the key-version filter, append-only access, audit, plan."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import event

from ecrin_e2ee import ScopeKey, rekey_record_header
from ecrin_platform.db import is_sqlite
from records_api.records.audit import AUDIT, scope_chain
from records_api.records.repository import RecordsRepository
from records_api.records.service import now
from tests.records_api.conftest import Actor, Practice, b64, unb64

URL = "/v1/records/headers"


async def pages(practice: Practice, actor: Actor | None = None, **params: Any
                ) -> list[list[dict[str, Any]]]:
    out, cursor = [], None
    while True:
        query = {"file_id": str(practice.file_id), "scope": "clinical", **params}
        if cursor:
            query["cursor"] = cursor
        response = await practice.client.get(URL, params=query, headers=practice.headers(actor))
        assert response.status_code == 200, response.text
        assert response.headers["cache-control"] == "no-store"
        body = response.json()
        out.append(body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            return out


async def add_version(practice: Practice, record_id: uuid.UUID, version: int,
                      *, upload: bool = True) -> None:
    record = practice.encrypt(b"v%d" % version, record_id=record_id, version=version)
    body = {k: v for k, v in Practice.body(record).items()
            if k in ("header", "metadata_ciphertext", "content_length")}
    created = await practice.client.post(
        f"/v1/records/{record_id}/versions", json=body,
        headers=practice.headers(**{"If-Match": f'"v{version - 1}"'}))
    assert created.status_code == 201, created.text
    if upload:
        assert (await practice.upload(record)).status_code == 204


class TestPages:
    async def test_every_committed_version_of_live_records_once_in_order(
            self, practice: Practice):
        records = [await practice.add(b"r%d" % i) for i in range(4)]
        ids = [r.header.record_id for r in records]
        await add_version(practice, ids[1], 2)
        await add_version(practice, ids[1], 3)
        await add_version(practice, ids[2], 2, upload=False)  # pending: not listed
        await practice.add(b"other scope", scope="shared")
        await practice.create(practice.encrypt(b"never uploaded"))  # pending record
        gone = await practice.add(b"deleted")
        deleted = await practice.client.delete(f"/v1/records/{gone.header.record_id}",
                                               headers=practice.headers(**{"If-Match": '"v1"'}))
        assert deleted.status_code == 204

        listed = await pages(practice, limit=2)
        assert [len(p) for p in listed] == [2, 2, 2]
        items = [item for page in listed for item in page]
        assert [(item["record_id"], item["version"]) for item in items] == [
            (str(ids[0]), 1), (str(ids[1]), 1), (str(ids[1]), 2), (str(ids[1]), 3),
            (str(ids[2]), 1), (str(ids[3]), 1)]
        assert set(items[0]) == {"record_id", "version", "key_version", "header"}
        assert unb64(items[0]["header"]) == records[0].header.to_bytes()
        assert {item["key_version"] for item in items} == {1}
        # One page holding everything; a page boundary inside a record's versions.
        assert [len(p) for p in await pages(practice, limit=2000)] == [6]
        assert [len(p) for p in await pages(practice, limit=3)] == [3, 3]

    async def test_below_key_version_leaves_out_what_is_re_keyed(self, practice: Practice):
        records = [await practice.add(b"r%d" % i) for i in range(3)]
        new_key = ScopeKey.generate(practice.file_id, records[0].header.scope, 2)
        practice.sharing.rotated(practice.file_id, "clinical", 2)
        rekeyed = rekey_record_header(records[1].header, practice.keys["clinical"], new_key,
                                      practice.owner.keys)
        answer = await practice.client.post("/v1/records/rekey", headers=practice.headers(),
                                            json={"items": [{
                                                "record_id": str(rekeyed.record_id),
                                                "version": 1,
                                                "header": b64(rekeyed.to_bytes())}]})
        assert answer.status_code == 200, answer.text
        below = [i["record_id"] for p in await pages(practice, below_key_version=2) for i in p]
        assert below == [str(records[0].header.record_id), str(records[2].header.record_id)]
        everything = [i for p in await pages(practice) for i in p]
        assert [i["key_version"] for i in everything] == [1, 2, 1]
        assert await pages(practice, below_key_version=1) == [[]]

    async def test_a_cursor_survives_re_keying_of_what_it_passed(self, practice: Practice):
        records = [await practice.add(b"r%d" % i) for i in range(3)]
        first = await practice.client.get(URL, headers=practice.headers(), params={
            "file_id": str(practice.file_id), "scope": "clinical", "below_key_version": 2,
            "limit": 1})
        new_key = ScopeKey.generate(practice.file_id, records[0].header.scope, 2)
        practice.sharing.rotated(practice.file_id, "clinical", 2)
        rekeyed = rekey_record_header(records[0].header, practice.keys["clinical"], new_key,
                                      practice.owner.keys)
        assert (await practice.client.post("/v1/records/rekey", headers=practice.headers(),
                                           json={"items": [{
                                               "record_id": str(rekeyed.record_id),
                                               "version": 1,
                                               "header": b64(rekeyed.to_bytes())}]})
                ).status_code == 200
        rest = await practice.client.get(URL, headers=practice.headers(), params={
            "file_id": str(practice.file_id), "scope": "clinical", "below_key_version": 2,
            "cursor": first.json()["next_cursor"]})
        assert [i["record_id"] for i in rest.json()["items"]] == [
            str(r.header.record_id) for r in records[1:]]

    @pytest.mark.parametrize("params", [
        {"cursor": "bm9wZQ"},  # "nope"
        {"cursor": "MjAyNi0xMS0yOFQyMjoxMDowMCswMDowMHwxMjM"},  # a listing-shaped cursor
        {"cursor": b64(f"h|2026-11-28T22:10:00+00:00|{uuid.uuid4().hex}|0".encode())},
        {"cursor": b64(b"h|yesterday|x|1")},
    ])
    async def test_a_cursor_this_service_did_not_issue_is_400(self, practice: Practice,
                                                              params):
        response = await practice.client.get(URL, headers=practice.headers(), params={
            "file_id": str(practice.file_id), "scope": "clinical", **params})
        assert response.status_code == 400, response.text
        assert response.headers["content-type"].startswith("application/problem+json")

    @pytest.mark.parametrize("params", [
        {"limit": 0}, {"limit": 2001}, {"below_key_version": 0},
        {"below_key_version": 1 << 32}, {"scope": "everything"}, {"scope": None},
    ])
    async def test_bad_parameters_are_422(self, practice: Practice, params):
        query = {"file_id": str(practice.file_id), "scope": "clinical", **params}
        response = await practice.client.get(URL, headers=practice.headers(),
                                             params={k: v for k, v in query.items()
                                                     if v is not None})
        assert response.status_code == 422, response.text


class TestAccess:
    """Re-keying is a write: reading the headers needs append on the scope."""

    async def test_no_access_to_the_file_or_the_scope_is_404(self, practice: Practice):
        await practice.add(b"bilan")
        stranger = practice.actor()
        secretary = practice.actor("secretary")
        practice.sharing.grant(practice.file_id, secretary.id, "secretary",
                               administrative="append")
        for actor, file_id in ((stranger, practice.file_id), (secretary, practice.file_id),
                               (practice.owner, uuid.uuid4())):
            response = await practice.client.get(URL, headers=practice.headers(actor), params={
                "file_id": str(file_id), "scope": "clinical"})
            assert response.status_code == 404, response.text
            assert response.headers["cache-control"] == "no-store"
            assert "header" not in response.json()

    async def test_read_only_access_is_403(self, practice: Practice):
        await practice.add(b"bilan")
        for relationship in ("patient", "care_team"):
            reader = practice.actor()
            practice.sharing.grant(practice.file_id, reader.id, relationship, clinical="read")
            response = await practice.client.get(URL, headers=practice.headers(reader),
                                                 params={"file_id": str(practice.file_id),
                                                         "scope": "clinical"})
            assert response.status_code == 403, response.text
            assert response.json()["type"].endswith("/read-only-scope")

    async def test_a_member_who_may_append_lists_the_headers(self, practice: Practice):
        record = await practice.add(b"bilan")
        colleague = practice.actor()
        practice.sharing.grant(practice.file_id, colleague.id, "care_team", clinical="append")
        [[item]] = await pages(practice, colleague)
        assert item["record_id"] == str(record.header.record_id)


class TestAudit:
    async def test_one_event_per_page_and_none_for_a_refusal(self, practice: Practice):
        for i in range(3):
            await practice.add(b"r%d" % i)
        assert len(await pages(practice, limit=2)) == 2
        stranger = practice.actor()
        refused = await practice.client.get(URL, headers=practice.headers(stranger), params={
            "file_id": str(practice.file_id), "scope": "clinical"})
        assert refused.status_code == 404
        async with practice.app.state.sessionmaker() as session:
            events = await AUDIT.chain(session, scope_chain(practice.file_id, "clinical"))
        listed = [e for e in events if e["action"] == "record.headers.list"]
        assert [(e["actor"], e["target"]) for e in listed] == [
            (str(practice.owner.id), f"file:{practice.file_id}/clinical")] * 2


class TestPlan:
    """A page is one range of the partial listing index joined to each record's versions
    by primary key, not a scan and sort of the file."""

    @pytest.mark.parametrize("with_cursor", [False, True])
    async def test_the_query_uses_the_listing_index(self, practice: Practice, with_cursor):
        captured: list[tuple[str, Any]] = []

        def capture(_conn, _cursor, statement, parameters, _context, _many):
            captured.append((statement, parameters))

        async with practice.app.state.sessionmaker() as session:
            conn = await session.connection()
            after = (now(), uuid.uuid4(), 1) if with_cursor else None
            event.listen(conn.sync_connection, "before_cursor_execute", capture)
            try:
                await RecordsRepository(session).header_page(practice.file_id, "clinical", 2,
                                                             after, 2001)
            finally:
                event.remove(conn.sync_connection, "before_cursor_execute", capture)
            statement, parameters = captured[-1]
            if is_sqlite(str(conn.engine.url)):
                plan = (await conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement,
                                                   tuple(parameters))).all()
                detail = " ".join(str(row[-1]) for row in plan)
                # Versions come in primary-key order inside each record: at most a sort
                # of one record's versions ("RIGHT PART"), never a sort of the file.
                assert "TEMP B-TREE FOR ORDER BY" not in detail, detail
                assert "record_versions USING PRIMARY KEY" in detail or (
                    "sqlite_autoindex_record_versions" in detail), detail
            else:
                # Tiny test tables make a sequential scan cheapest; forbid it to see
                # whether the indexes can serve the query at all.
                await conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
                await conn.exec_driver_sql("SET LOCAL enable_sort = off")
                plan = (await conn.exec_driver_sql("EXPLAIN " + statement,
                                                   tuple(parameters))).all()
                detail = " ".join(row[0] for row in plan)
                nodes = [row[0].strip().removeprefix("->").strip() for row in plan]
                # Versions come in primary-key order inside each record: at most an
                # incremental sort of one record's versions, never a sort of the file.
                assert not [n for n in nodes if n.startswith("Sort  (")], detail
                assert "record_versions_pkey" in detail, detail
            assert "ix_records_listing" in detail, detail
