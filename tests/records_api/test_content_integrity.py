"""Stored content that lost a row is refused before any byte is sent."""

from __future__ import annotations

from sqlalchemy import select

from records_api.models import RecordVersion
from tests.records_api.conftest import Practice, drop_rows

BOTH_STORES = True


class TestIncompleteContent:
    async def test_a_missing_row_is_a_clean_problem_not_a_cut_200(self, practice: Practice):
        record = await practice.add(b"x" * (3 << 20))  # several 1 MiB rows
        rid = record.header.record_id
        async with practice.app.state.sessionmaker() as session:
            upload_id = await session.scalar(select(RecordVersion.content_upload_id).where(
                RecordVersion.record_id == rid, RecordVersion.version == 1))
        assert upload_id is not None
        await drop_rows(practice, upload_id, 1)
        response = await practice.client.get(f"/v1/records/{rid}/versions/1/content",
                                             headers=practice.headers())
        assert response.status_code == 503
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["type"].endswith("/content-unavailable")

    async def test_complete_content_downloads(self, practice: Practice):
        record = await practice.add(b"y" * (2 << 20))
        response = await practice.client.get(
            f"/v1/records/{record.header.record_id}/versions/1/content",
            headers=practice.headers())
        assert response.status_code == 200
        assert len(response.content) == int(response.headers["content-length"])
