"""A 64 MiB upload and download through the in-process app use bounded memory.

The body is encrypted to a temporary file first (as a client does: the header, with
the content digest, is needed at create), then streamed from it in 64 KiB pieces. The
download is driven through raw ASGI so that no test client buffers the response.
"""

from __future__ import annotations

import asyncio
import os
import tracemalloc
import uuid
from pathlib import Path

from ecrin_e2ee import EncryptedRecord, RecordEncryptor
from tests.records_api.conftest import Practice
from tests.support.memory import PeakRss

SIZE = 64 << 20
#: Python allocations (tracemalloc) and resident memory may grow by at most this much.
TRACED_BUDGET = 16 << 20
RSS_BUDGET = 48 << 20


async def file_pieces(path: Path, size: int = 64 << 10):
    with path.open("rb") as f:  # noqa: ASYNC230 - a local temp file, 64 KiB at a time
        while piece := f.read(size):
            yield piece


async def asgi_download(app, path: str, headers: dict[str, str]) -> tuple[int, int]:
    """(status, body bytes) with the body counted and dropped as it arrives."""
    status, received = 0, 0
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "GET", "scheme": "http", "path": path, "raw_path": path.encode(),
             "query_string": b"", "root_path": "", "server": ("testserver", 80),
             "client": ("127.0.0.1", 1),
             "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()]}
    sent = False

    async def receive():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.Event().wait()  # never disconnects

    async def send(message):
        nonlocal status, received
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            received += len(message.get("body", b""))

    await app(scope, receive, send)
    return status, received


class TestBoundedMemory:
    async def test_64_mib_up_and_down(self, practice: Practice, tmp_path: Path):
        practice_file = tmp_path / "ciphertext.bin"
        enc = RecordEncryptor(file_id=practice.file_id, record_id=uuid.uuid4(),
                              record_version=1, scope_key=practice.keys["shared"],
                              author=practice.owner.keys, metadata={"kind": "scan"})
        block = os.urandom(1 << 20)
        with practice_file.open("wb") as out:
            for chunk in enc.encrypt(block for _ in range(SIZE >> 20)):
                out.write(chunk)
        length = practice_file.stat().st_size
        # The chunks are in the file, not in memory.
        record = EncryptedRecord(enc.header, enc.metadata_ciphertext, ())
        body = Practice.body(record, content_length=length)
        headers = practice.headers(**{"Idempotency-Key": "memory-test-0001"})
        assert (await practice.client.post("/v1/records", json=body,
                                           headers=headers)).status_code == 201

        tracemalloc.start()
        try:
            with PeakRss() as rss:
                response = await practice.upload(record, content=file_pieces(practice_file))
            _, upload_peak = tracemalloc.get_traced_memory()
            tracemalloc.reset_peak()
            assert response.status_code == 204, response.text
            path = f"/v1/records/{enc.header.record_id}/versions/1/content"
            with PeakRss() as download_rss:
                status, received = await asgi_download(practice.app, path, practice.headers())
            _, download_peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert (status, received) == (200, length)
        print(f"\n64 MiB upload: traced peak {upload_peak / 2**20:.1f} MiB, "
              f"RSS rise {rss.rise / 2**20:.1f} MiB; download: traced peak "
              f"{download_peak / 2**20:.1f} MiB, RSS rise {download_rss.rise / 2**20:.1f} MiB")
        assert upload_peak < TRACED_BUDGET
        assert download_peak < TRACED_BUDGET
        assert rss.rise < RSS_BUDGET
        assert download_rss.rise < RSS_BUDGET
