"""Large uploads do not hold the write lock: creates and reads proceed beside them; and
writers of one file at once leave one unbroken audit chain."""

from __future__ import annotations

import asyncio
from collections import Counter

from ecrin_platform.audit import verify_chain
from records_api.records.audit import AUDIT, scope_chain
from tests.records_api.conftest import Practice, b64, unb64


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


class TestOneFileManyWriters:
    """Creates and reads of one file at once append to one audit chain. On PostgreSQL they
    read the chain's end without its lock and fall back to the locked way when another
    append came first (``AuditLog.insert_after_lock``): whatever the interleaving, every
    request succeeds, every event is there once, and the chain has no fork or gap."""

    async def test_creates_reads_and_replays_of_one_file_at_once(self, practice: Practice):
        existing = [practice.encrypt(b"existing %d" % i) for i in range(6)]
        for record in existing:
            created = await practice.create(record, content=b64(b"".join(record.chunks)))
            assert created.status_code == 201
        fresh = [practice.encrypt(b"note %d" % i) for i in range(16)]
        replayed = practice.encrypt(b"sent four times")

        async def create(record, key: str | None = None) -> int:
            made = await practice.create(record, key=key, content=b64(b"".join(record.chunks)))
            return made.status_code

        async def read(record) -> tuple[int, bytes]:
            got = await practice.client.get(f"/v1/records/{record.header.record_id}",
                                            headers=practice.headers(),
                                            params={"include": "content"})
            return got.status_code, unb64(got.json()["content"]) if got.is_success else b""

        results = await asyncio.gather(*(create(r) for r in fresh),
                                       *(read(r) for r in existing * 3),
                                       *(create(replayed, "same-key-0001") for _ in range(4)))
        assert results[:16] == [201] * 16
        assert results[16:34] == [(200, b"".join(r.chunks)) for r in existing * 3]
        assert results[34:] == [201] * 4
        async with practice.app.state.sessionmaker() as session:
            events = await AUDIT.chain(session, scope_chain(practice.file_id, "clinical"))
        assert verify_chain(events)
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
        actions = Counter(e["action"] for e in events)
        # 6 + 16 + 1 creates (the replays write nothing), each with its content; 18 reads
        assert actions == {"record.create": 23, "record.content.write": 23,
                           "record.content.read": 18}
        targets = Counter(e["target"] for e in events if e["action"] == "record.create")
        assert set(targets.values()) == {1}
