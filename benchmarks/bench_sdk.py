"""Records through the SDK under load: what a user's device really runs (issue 21).

The raw-HTTP figures of ``bench_load`` encrypt before the clock starts and send the
minimum; here each concurrent client is a practitioner's own ``EcrinClient`` and
``Records`` (own account, patient file, profile folder and connection), and an operation
is the SDK call: ``Records.create`` of a 10 KiB note (encrypt, sign, every request the SDK
sends) and ``Records.read`` of one (every request, signature checks, decryption). Besides
throughput and latency, each row gives the requests the SDK sent per operation (counted
on its HTTP transport) and the CPU time per operation of every process, the SDK clients'
(the load generator) included.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
import uuid
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import httpx
from ecrin_client import EcrinClient, Profile, Records
from ecrin_client.kine import PatientIdentity, RecordMetadata
from ecrin_client.patients import Patients

from benchmarks.bench_load import ProcessCpu
from benchmarks.load import run_clients
from benchmarks.services import BenchStack

RECORD_SIZE = 10 * 1024
PASSPHRASE = "benchmark passphrase 2026"  # noqa: S105 (a throwaway account)


class CountingTransport(httpx.AsyncHTTPTransport):
    """Counts the requests the SDK sends."""

    def __init__(self) -> None:
        super().__init__()
        self.requests = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        return await super().handle_async_request(request)


class SdkClient:
    """One practitioner's device: an unlocked SDK session and its patient file."""

    def __init__(self, client: EcrinClient, records: Records, file_id: str,
                 wire: CountingTransport) -> None:
        self.client = client
        self.records = records
        self.file_id = file_id
        self.wire = wire
        self.written: list[str] = []

    @classmethod
    async def sign_up(cls, server: str, home: Path) -> SdkClient:
        wire = CountingTransport()
        client = EcrinClient(server, Profile(home), transport=wire)
        email = f"sdk-{uuid.uuid4().hex[:10]}@example.fr"
        await client.signup(email, PASSPHRASE, "practitioner")
        await client.login(email, PASSPHRASE)
        records = Records(client, await client.unlock(PASSPHRASE))
        patient = await Patients(records).create(PatientIdentity(
            name="Patient SDK", birth_date=date(1980, 1, 1)))
        return cls(client, records, patient.file_id, wire)


def _meta(size: int) -> RecordMetadata:
    return RecordMetadata(title="séance", kind="session-note", content_type="application/json",
                          size=size, created_at=datetime.now(UTC))


async def measure(bs: BenchStack, *, levels: tuple[int, ...] = (1, 16),
                  seconds: float = 8.0, max_ops: int = 4000) -> dict[str, Any]:
    """At each level, SDK creates for ``seconds``, then SDK reads of those records."""
    # Profiles in memory when possible: the figures are the servers', not this disk's.
    shm = Path("/dev/shm")  # noqa: S108 (a private mkdtemp folder inside it)
    home = Path(tempfile.mkdtemp(prefix="ecrin-sdk-",
                                 dir=shm if shm.is_dir() else None))  # noqa: ASYNC240 (set-up, before the clock)
    clients = [await SdkClient.sign_up(bs.gateway, home / str(i)) for i in range(max(levels))]
    content = secrets.token_bytes(RECORD_SIZE)
    cpu = ProcessCpu(bs)
    out: dict[str, Any] = {}

    async def create(c: int, i: int) -> bool:
        me = clients[c]
        info = await me.records.create(me.file_id, "clinical", _meta(RECORD_SIZE), content)
        me.written.append(info.record_id)
        return True

    async def read(c: int, i: int) -> bool:
        me = clients[c]
        _, data = await me.records.read(me.written[i % len(me.written)])
        if data != content:
            raise RuntimeError("read back other bytes")
        return True

    try:
        for level in levels:
            per_client = max(1, max_ops // level)
            await run_clients(level, 1, create)  # warm-up: keys, connections, caches
            for name, op in (("create", create), ("read", read)):
                sent = sum(c.wire.requests for c in clients[:level])
                cpu.start()
                done = await run_clients(level, per_client, op, seconds)
                per_op = cpu.per_op(done.ops)
                requests = sum(c.wire.requests for c in clients[:level]) - sent
                out[f"sdk {name} c{level}"] = {
                    "operation": f"sdk {name}", "clients": level, **done.to_json(),
                    "requests_per_op": round(requests / max(done.ops, 1), 2),
                    "cpu_ms_per_op": per_op}
    finally:
        for c in clients:
            await c.client.aclose()
        shutil.rmtree(home, ignore_errors=True)
    return {"backend": bs.backend, "record_bytes": RECORD_SIZE, "results": out,
            "pid": os.getpid()}


def profile_writes(n: int = 100_000) -> dict[str, Any]:
    """One device recording the versions it wrote, ``n`` times (one create each): the time
    of the first and of the last thousand, and the profile's size. O(1) per write means
    the two are alike (the JSON file this replaced was rewritten whole every time)."""
    import time

    from ecrin_client.profile import Profile

    shm = Path("/dev/shm")  # noqa: S108 (a private mkdtemp folder inside it)
    home = Path(tempfile.mkdtemp(prefix="ecrin-profile-", dir=shm if shm.is_dir() else None))
    try:
        profile = Profile(home / "p")
        batch = 1000
        times: list[float] = []
        for start in range(0, n, batch):
            started = time.perf_counter()
            for i in range(start, start + batch):
                profile.remember_versions({str(uuid.UUID(int=i)): 1})
            times.append((time.perf_counter() - started) / batch)
        size = sum(p.stat().st_size for p in (home / "p").iterdir())
        assert profile.seen_version(str(uuid.UUID(int=n - 1))) == 1
        profile.close()
    finally:
        shutil.rmtree(home, ignore_errors=True)
    return {"writes": n, "first_1000_us": round(times[0] * 1e6, 1),
            "last_1000_us": round(times[-1] * 1e6, 1),
            "growth": round(times[-1] / times[0], 2), "profile_bytes": size}
