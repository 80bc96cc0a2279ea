"""Keyset pagination over committed records, newest first, filtered to readable scopes."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import event

from ecrin_platform.db import is_sqlite
from records_api.records.repository import RecordsRepository
from records_api.records.service import now
from tests.records_api.conftest import Practice


async def all_pages(practice: Practice, actor=None, **params) -> list[list[str]]:
    pages, cursor = [], None
    while True:
        query = {"file_id": str(practice.file_id), **params}
        if cursor:
            query["cursor"] = cursor
        response = await practice.client.get("/v1/records", params=query,
                                             headers=practice.headers(actor))
        assert response.status_code == 200, response.text
        body = response.json()
        pages.append([item["record_id"] for item in body["items"]])
        cursor = body["next_cursor"]
        if cursor is None:
            return pages


class TestPagination:
    async def test_pages_cover_every_record_once_newest_first(self, practice: Practice):
        ids = []
        for i in range(7):
            scope = "clinical" if i % 2 == 0 else "shared"
            ids.append(str((await practice.add(b"r%d" % i, scope=scope)).header.record_id))
        pending = practice.encrypt(b"pending")
        await practice.create(pending)
        pages = await all_pages(practice, limit=3)
        assert [len(p) for p in pages] == [3, 3, 1]
        assert [i for page in pages for i in page] == ids[::-1]

    async def test_a_shared_only_caller_never_sees_clinical(self, practice: Practice):
        shared = [str((await practice.add(b"s", scope="shared")).header.record_id)
                  for _ in range(3)]
        for _ in range(4):
            await practice.add(b"c", scope="clinical")
        patient = practice.actor("patient")
        practice.sharing.grant(practice.file_id, patient.id, "patient", shared="read")
        pages = await all_pages(practice, patient, limit=2)
        assert [i for page in pages for i in page] == shared[::-1]
        assert [len(p) for p in pages] == [2, 1]
        response = await practice.client.get("/v1/records", headers=practice.headers(patient),
                                             params={"file_id": str(practice.file_id),
                                                     "scope": "clinical"})
        assert response.status_code == 404
        assert "clinical" not in response.text.replace("scope", "")

    async def test_scope_filter(self, practice: Practice):
        await practice.add(b"c", scope="clinical")
        admin = str((await practice.add(b"a", scope="administrative")).header.record_id)
        assert await all_pages(practice, scope="administrative") == [[admin]]

    async def test_no_access_to_the_file_is_404(self, practice: Practice):
        response = await practice.client.get("/v1/records", headers=practice.headers(),
                                             params={"file_id": str(uuid.uuid4())})
        assert response.status_code == 404

    async def test_a_forged_cursor_is_400(self, practice: Practice):
        response = await practice.client.get("/v1/records", headers=practice.headers(),
                                             params={"file_id": str(practice.file_id),
                                                     "cursor": "bm9wZQ"})
        assert response.status_code == 400


class TestListingPlan:
    """A page is one range of the partial listing index, not a scan and sort of the file."""

    @pytest.mark.parametrize("with_cursor", [False, True])
    async def test_the_listing_query_uses_the_index(self, practice: Practice, with_cursor):
        captured: list[tuple[str, Any]] = []

        def capture(_conn, _cursor, statement, parameters, _context, _many):
            captured.append((statement, parameters))

        async with practice.app.state.sessionmaker() as session:
            conn = await session.connection()
            after = (now(), uuid.uuid4()) if with_cursor else None
            event.listen(conn.sync_connection, "before_cursor_execute", capture)
            try:
                await RecordsRepository(session).listed_page(practice.file_id, "clinical",
                                                             after, 51)
            finally:
                event.remove(conn.sync_connection, "before_cursor_execute", capture)
            statement, parameters = captured[-1]
            if is_sqlite(str(conn.engine.url)):
                plan = (await conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement,
                                                   tuple(parameters))).all()
                detail = " ".join(str(row[-1]) for row in plan)
                assert "TEMP B-TREE" not in detail, detail  # the index gives the order
            else:
                # Tiny test tables make a sequential scan cheapest; forbid it to see
                # whether the index can serve the query at all.
                await conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
                await conn.exec_driver_sql("SET LOCAL enable_sort = off")
                plan = (await conn.exec_driver_sql("EXPLAIN " + statement,
                                                   tuple(parameters))).all()
                detail = " ".join(row[0] for row in plan)
                assert "Sort" not in detail, detail
            assert "ix_records_listing" in detail, detail
