"""A 200 MiB document through the real gateway and records API, in bounded memory.

The peak RSS of the gateway and records-api processes is sampled every 20 ms while the
client streams the document up and back down; each may grow by at most 64 MiB over its
level before the transfer. The test itself never holds the document either: it is written
and hashed in 1 MiB blocks.

The gateway and records-api of the shared stack are restarted for this test (a clean
memory baseline) with their default settings: the default upload limit is the ciphertext
of a 200 MiB document (200 MiB of padded stream plus 17 bytes per 64 KiB chunk), so the
document passes and one byte more is a 413 (``test_patients_records.py::TestLimits``).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psutil
import pytest
from ecrin_client.kine import PatientIdentity, RecordMetadata

from ecrin_platform.devstack import Stack
from tests.e2e.records_support import ServiceDatabase, new_practitioner

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]

SIZE = 200 << 20
BLOCK = 1 << 20
MAX_GROWTH = 64 << 20


RESTARTED = ["records-api", "gateway"]


def restart(stack: Stack, env: dict[str, str]) -> None:
    stack.extra_env.clear()
    stack.extra_env.update(env)
    for service in RESTARTED:
        stack.stop(service)
        stack.start(service)
    stack.wait_ready(services=RESTARTED)


#: The purge runs every second and takes a tombstoned record's ciphertext at once: the test
#: deletes its document, so that the stack it shares with the other end-to-end modules does
#: not keep 200 MiB that every later database dump would have to read.
PURGE_AT_ONCE = {"ECRIN_RECORDS_PURGE_AFTER_S": "0", "ECRIN_RECORDS_PURGE_INTERVAL_S": "1"}


@pytest.fixture
def big_stack(stack: Stack) -> Iterator[Stack]:
    saved = dict(stack.extra_env)
    restart(stack, {**saved, **PURGE_AT_ONCE})
    try:
        yield stack
    finally:
        restart(stack, saved)


def write_document(path: Path) -> str:
    """A 200 MiB 'PDF' of random bytes, written block by block; returns its SHA-256."""
    digest = hashlib.sha256()
    with open(path, "wb") as f:
        for i in range(SIZE // BLOCK):
            block = (b"%PDF-1.7\n" + os.urandom(BLOCK - 9)) if i == 0 else os.urandom(BLOCK)
            digest.update(block)
            f.write(block)
    return digest.hexdigest()


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(BLOCK):
            digest.update(block)
    return digest.hexdigest()


class PeakRss:
    """Samples the resident memory of some processes in a thread; keeps each one's peak."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.processes = {name: psutil.Process(pid) for name, pid in pids.items()}
        self.baseline = {name: p.memory_info().rss for name, p in self.processes.items()}
        self.peak = dict(self.baseline)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            for name, process in self.processes.items():
                self.peak[name] = max(self.peak[name], process.memory_info().rss)
            time.sleep(0.02)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def growth(self) -> dict[str, int]:
        return {name: self.peak[name] - self.baseline[name] for name in self.processes}


def stored_uploads(db: ServiceDatabase, record_id: uuid.UUID) -> int:
    return db.rows("SELECT count(*) FROM content_uploads WHERE record_id = ?",
                   record_id if db.postgres else record_id.hex)[0][0]


def assert_purged(db: ServiceDatabase, record_id: uuid.UUID, timeout: float = 30.0) -> None:
    """The deleted document's ciphertext leaves the database with the next purge."""
    deadline = time.monotonic() + timeout
    while (left := stored_uploads(db, record_id)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert left == 0, f"{left} upload(s) of the deleted document still stored"


def test_a_200_mib_document_round_trips_in_bounded_memory(big_stack: Stack, tmp_path: Path,
                                                          record_property) -> None:
    source, back = tmp_path / "irm.pdf", tmp_path / "irm-back.pdf"
    expected = write_document(source)

    async def flow() -> tuple[dict[str, int], uuid.UUID]:
        kine = await new_practitioner(big_stack.url("gateway"), tmp_path / "home")
        async with kine.client() as client:
            records, patients = await kine.unlocked(client)
            patient = await patients.create(PatientIdentity(
                name="Grand Document", birth_date=datetime(1970, 5, 6).date()))
            pids = {name: big_stack.processes[name].pid for name in ("gateway", "records-api")}
            with PeakRss(pids) as rss:
                started = time.monotonic()
                info = await records.create(patient.file_id, "clinical", RecordMetadata(
                    title="IRM genou", kind="imaging", content_type="application/pdf",
                    size=SIZE, created_at=datetime.now(UTC), filename="irm.pdf"), source)
                uploaded = time.monotonic()
                await records.download(info.record_id, back)
                done = time.monotonic()
            growth = rss.growth()
            record_property("upload_s", round(uploaded - started, 1))
            record_property("download_s", round(done - uploaded, 1))
            print(f"\n200 MiB: upload {uploaded - started:.1f} s, download {done - uploaded:.1f} s"
                  f"; RSS growth: " + ", ".join(f"{k} +{v / 2**20:.1f} MiB"
                                                  for k, v in growth.items()))
            assert stored_uploads(db, uuid.UUID(info.record_id)) == 1
            await records.delete(info.record_id)
            return growth, uuid.UUID(info.record_id)

    db = ServiceDatabase(big_stack.database_urls["records-api"])
    growth, record_id = asyncio.run(flow())
    assert sha256_of(back) == expected
    assert_purged(db, record_id)
    for name, grew in growth.items():
        record_property(f"{name}_rss_growth_mib", round(grew / 2**20, 1))
        assert grew <= MAX_GROWTH, f"{name} grew by {grew / 2**20:.1f} MiB"
