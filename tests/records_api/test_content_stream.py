"""A download's rows: read one ahead, sent whole and in order, and a client that leaves
mid-download gives every database connection back (the read ahead is cancelled)."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncGenerator
from typing import cast

from sqlalchemy import select

from ecrin_e2ee import EncryptedRecord
from records_api.models import RecordVersion
from records_api.records.content import CONTENT_ROW_BYTES, ContentStore
from tests.records_api.conftest import Practice

BOTH_STORES = True

#: Three whole rows and part of a fourth, once encrypted.
CONTENT = 3 * CONTENT_ROW_BYTES + 12_345


async def _stored(practice: Practice) -> tuple[ContentStore, uuid.UUID, bytes]:
    record: EncryptedRecord = await practice.add(os.urandom(CONTENT))
    store: ContentStore = practice.app.state.content_store
    async with store.engine.connect() as conn:
        upload_id = await conn.scalar(select(RecordVersion.content_upload_id).where(
            RecordVersion.record_id == record.header.record_id, RecordVersion.version == 1))
    assert upload_id is not None
    return store, upload_id, b"".join(record.chunks)


async def _all_checked_in(store: ContentStore) -> bool:
    for _ in range(100):
        if store.engine.pool.checkedout() == 0:  # type: ignore[attr-defined]  # QueuePool has it, Pool does not
            return True
        await asyncio.sleep(0.01)
    return False


class TestContentStream:
    async def test_rows_come_whole_and_in_order(self, practice: Practice):
        store, upload_id, ciphertext = await _stored(practice)
        source = await store.check_complete(upload_id, len(ciphertext))
        rows = [row async for row in store.stream(upload_id, len(ciphertext), source)]
        assert [len(row) for row in rows] == [CONTENT_ROW_BYTES] * 3 + [
            len(ciphertext) - 3 * CONTENT_ROW_BYTES]
        assert b"".join(rows) == ciphertext

    async def test_a_client_that_leaves_gives_back_every_connection(self,
                                                                   practice: Practice):
        store, upload_id, ciphertext = await _stored(practice)
        assert await _all_checked_in(store)
        source = await store.check_complete(upload_id, len(ciphertext))
        rows = cast(AsyncGenerator[bytes, None],
                    store.stream(upload_id, len(ciphertext), source))
        first = await anext(rows)  # the second row is being read ahead meanwhile
        assert first == ciphertext[:CONTENT_ROW_BYTES]
        await rows.aclose()  # what Starlette does when the client disconnects
        assert await _all_checked_in(store)
