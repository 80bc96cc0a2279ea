"""A small record read whole (``GET /v1/records/{id}?include=content``), statement by
statement: on PostgreSQL two, the record with its version and its scope's chain end, then
the read's audit event with the content it releases; the content is never read by a
statement that does not record the read. SQLite keeps its own way (the read session, then
the event in a transaction of its own)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import delete, event, select, update

from ecrin_platform.audit import verify_chain
from ecrin_platform.db import read_only_engine
from records_api.models import ContentChunk, RecordVersion
from records_api.records.audit import AUDIT, scope_chain
from tests.records_api.conftest import Practice, b64, unb64


@contextmanager
def statements(practice: Practice) -> Iterator[list[str]]:
    seen: list[str] = []
    contexts: list[object] = []  # kept alive: an id is never reused meanwhile

    def capture(conn, cursor, statement, parameters, context, executemany):
        if not any(c is context for c in contexts):  # an engine with options shares events
            contexts.append(context)
            seen.append(statement)

    engine = practice.app.state.engine
    engines = {engine.sync_engine, read_only_engine(engine).sync_engine}  # one on PostgreSQL
    for each in engines:
        event.listen(each, "before_cursor_execute", capture)
    try:
        yield seen
    finally:
        for each in engines:
            event.remove(each, "before_cursor_execute", capture)


def is_postgres(practice: Practice) -> bool:
    return practice.app.state.engine.dialect.name == "postgresql"


class TestOneSmallRead:
    async def test_the_content_comes_with_its_event(self, practice: Practice):
        record = practice.encrypt(b"une note de bilan")
        content = b"".join(record.chunks)
        assert (await practice.create(record, content=b64(content))).status_code == 201
        with statements(practice) as seen:
            got = await practice.client.get(f"/v1/records/{record.header.record_id}",
                                            headers=practice.headers(),
                                            params={"include": "content"})
        assert got.status_code == 200 and unb64(got.json()["content"]) == content
        reading = [s for s in seen if "FROM content_chunks" in s]
        assert len(reading) == 1, seen
        if is_postgres(practice):
            assert len(seen) == 2, seen
            assert "INSERT INTO audit_events" in reading[0], reading[0]
        async with practice.app.state.sessionmaker() as session:
            events = await AUDIT.chain(session, scope_chain(practice.file_id, "clinical"))
        assert verify_chain(events)
        assert [e["action"] for e in events][-1] == "record.content.read"

    async def test_an_unchanged_version_reads_no_content(self, practice: Practice):
        record = practice.encrypt(b"inchangee")
        assert (await practice.create(record, content=b64(b"".join(record.chunks)))
                ).status_code == 201
        path = f"/v1/records/{record.header.record_id}"
        etag = (await practice.client.get(path, headers=practice.headers())).headers["ETag"]
        with statements(practice) as seen:
            got = await practice.client.get(path, params={"include": "content"},
                                            headers={**practice.headers(),
                                                     "If-None-Match": etag})
        assert got.status_code == 304
        assert not [s for s in seen if "INSERT INTO audit_events" in s], seen  # not audited
        if is_postgres(practice):  # nor read there (SQLite reads it with the version)
            assert not [s for s in seen if "FROM content_chunks" in s], seen

    @pytest.mark.parametrize("how", ["missing", "shortened"])
    async def test_a_bad_content_row_is_a_clean_problem(self, practice: Practice, how: str):
        record = practice.encrypt(b"abimee")
        content = b"".join(record.chunks)
        assert (await practice.create(record, content=b64(content))).status_code == 201
        async with practice.app.state.sessionmaker() as session, session.begin():
            upload = (await session.execute(
                select(RecordVersion.content_upload_id).where(
                    RecordVersion.record_id == record.header.record_id))).scalar_one()
            rows = ContentChunk.upload_id == upload
            await session.execute(delete(ContentChunk).where(rows) if how == "missing" else
                                  update(ContentChunk).where(rows).values(data=content[:-1]))
        got = await practice.client.get(f"/v1/records/{record.header.record_id}",
                                        headers=practice.headers(),
                                        params={"include": "content"})
        assert got.status_code == 503, got.text
        assert got.headers["content-type"].startswith("application/problem+json")
        assert "content" not in got.json()
