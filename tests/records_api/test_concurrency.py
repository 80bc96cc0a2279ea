"""Large uploads do not hold the write lock: creates and reads proceed beside them."""

from __future__ import annotations

import asyncio

from tests.records_api.conftest import Practice


class TestConcurrentWriters:
    async def test_uploads_creates_and_reads_interleave_without_errors(self, practice: Practice):
        big = [practice.encrypt(bytes([i]) * (3 << 20)) for i in range(4)]
        for record in big:
            assert (await practice.create(record)).status_code == 201
        small = [practice.encrypt(b"note %d" % i) for i in range(16)]

        async def write_small(record) -> tuple[int, int]:
            created = await practice.create(record)
            uploaded = await practice.upload(record)
            return created.status_code, uploaded.status_code

        async def read_list() -> int:
            return (await practice.client.get("/v1/records", headers=practice.headers(),
                                              params={"file_id": str(practice.file_id)})
                    ).status_code

        results = await asyncio.gather(*(practice.upload(r) for r in big),
                                       *(write_small(r) for r in small),
                                       *(read_list() for _ in range(8)))
        assert [r.status_code for r in results[:4]] == [204] * 4
        assert results[4:20] == [(201, 204)] * 16
        assert results[20:] == [200] * 8
        listed = await practice.client.get("/v1/records", headers=practice.headers(),
                                           params={"file_id": str(practice.file_id),
                                                   "limit": 200})
        assert len(listed.json()["items"]) == 20
