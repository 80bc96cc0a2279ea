"""How cost grows with data: one page of a file of 10, 10 000 and 100 000 records; a
patient search among 10 000 patients; re-keying a file of 10 000 records after a scope
rotation, as time per record.

Bulk data is written straight into the services' databases with their own tables (rows
shaped like real ones: 410-byte signed headers, real metadata ciphertexts, blind-index
tokens from a real search key), then ANALYZEd, as a database in service would be. Every
timed request goes through the gateway.
"""

from __future__ import annotations

import os
import time
import uuid
from datetime import datetime
from typing import Any

import httpx
import psutil
from sqlalchemy import insert, select

from benchmarks.actors import Practitioner, spread
from benchmarks.bench_records import PASSPHRASE, metadata
from benchmarks.load import percentile
from benchmarks.services import BenchStack
from ecrin_e2ee import RecordHeader, Scope, SearchKey, encrypt_record

PAGE = 10


def _letters(n: int) -> str:
    out = ""
    for _ in range(4):
        n, r = divmod(n, 26)
        out += chr(ord("a") + r)
    return out


async def _seed_records(bs: BenchStack, author: uuid.UUID, file_id: uuid.UUID,
                        headers: list[tuple[uuid.UUID, bytes, bytes]], chunk: int = 5000
                        ) -> None:
    """Committed clinical records of ``file_id`` by ``author``: (record id, header,
    metadata ciphertext) each."""
    from records_api.models import Record, RecordVersion

    times = spread(len(headers))
    async with bs.database("records-api") as conn:
        for start in range(0, len(headers), chunk):
            part = list(zip(headers[start:start + chunk], times[start:start + chunk],
                            strict=True))
            await conn.execute(insert(Record), [
                {"id": rid, "file_id": file_id, "scope": "clinical", "created_at": at,
                 "updated_at": at, "current_version": 1, "state": "committed",
                 "deleted_at": None, "purged_at": None, "created_by": author}
                for (rid, _, _), at in part])
            await conn.execute(insert(RecordVersion), [
                {"record_id": rid, "version": 1, "header": header, "metadata_ciphertext": meta,
                 "content_length": RecordHeader.from_bytes(header).padded_length + 17,
                 "key_version": 1, "author": author, "created_at": at, "committed": True,
                 "committed_at": at, "content_upload_id": None}
                for (rid, header, meta), at in part])


async def listing(bs: BenchStack, sizes: tuple[int, ...] = (10, 10_000, 100_000),
                  reps: int = 40) -> dict[str, Any]:
    """First and second page (``limit=10``) of files of each size, requests interleaved."""
    owner = Practitioner.sign_up(bs.gateway)
    _, template = owner.encrypt(2048)
    header, meta = template.header.to_bytes(), template.metadata_ciphertext
    files: dict[int, uuid.UUID] = {}
    seeded = time.perf_counter()
    for size in sizes:
        file_id = uuid.uuid4() if size != sizes[0] else owner.file_id
        if file_id != owner.file_id:
            file_id, _ = owner.user.create_file(f"Growth {size}")
        files[size] = file_id
        # the same real header shape for every row (the service never parses it on reads)
        await _seed_records(bs, owner.user.account_id, file_id, [
            (uuid.uuid4(), header, meta) for _ in range(size)])
    seed_s = time.perf_counter() - seeded
    first: dict[int, list[float]] = {s: [] for s in sizes}
    second: dict[int, list[float]] = {s: [] for s in sizes}
    async with httpx.AsyncClient(base_url=bs.gateway, headers=owner.headers,
                                 timeout=30) as http:
        for rep in range(reps + 2):
            for size in sizes:
                started = time.perf_counter()
                page = await http.get("/v1/records", params={"file_id": str(files[size]),
                                                              "limit": PAGE})
                t1 = time.perf_counter() - started
                page.raise_for_status()
                body = page.json()
                assert len(body["items"]) == min(PAGE, size)
                t2 = None
                if body["next_cursor"]:
                    started = time.perf_counter()
                    more = await http.get("/v1/records", params={
                        "file_id": str(files[size]), "limit": PAGE,
                        "cursor": body["next_cursor"]})
                    t2 = time.perf_counter() - started
                    more.raise_for_status()
                if rep >= 2:  # two warm-up rounds
                    first[size].append(t1)
                    if t2 is not None:
                        second[size].append(t2)
    out = {str(s): {"records": s, "first_page_p50_ms": round(percentile(first[s], .5) * 1e3, 3),
                    "first_page_p99_ms": round(percentile(first[s], .99) * 1e3, 3),
                    "next_page_p50_ms": round(percentile(second[s], .5) * 1e3, 3)
                    if second[s] else None} for s in sizes}
    small, large = out[str(sizes[0])], out[str(sizes[-1])]
    return {"backend": bs.backend, "page_limit": PAGE, "seed_s": round(seed_s, 1),
            "sizes": out,
            "growth_ratio": round(large["first_page_p50_ms"] / small["first_page_p50_ms"], 3)}


async def search(bs: BenchStack, patients: int = 10_000, reps: int = 40) -> dict[str, Any]:
    """``GET /v1/files?token=..`` (name and birth date) for one patient, and the first page
    of the file list, with 1 and with ``patients`` files."""
    from sharing.models import Grant, PatientFile, SearchToken

    owner = Practitioner.sign_up(bs.gateway, name="Lefebvre")
    key = SearchKey.for_owner(owner.user.identity)
    target = [key.name_token("Lefebvre")]
    account = owner.user.account_id

    async def timed(params: dict[str, Any]) -> float:
        async with httpx.AsyncClient(base_url=bs.gateway, headers=owner.headers,
                                     timeout=30) as http:
            times = []
            for rep in range(reps + 2):
                started = time.perf_counter()
                got = await http.get("/v1/files", params=params)
                elapsed = time.perf_counter() - started
                got.raise_for_status()
                if "token" in params:
                    assert len(got.json()["items"]) == 1
                if rep >= 2:
                    times.append(elapsed)
        return percentile(times, 0.5) * 1e3

    before = {"search_p50_ms": await timed({"token": target}),
              "list_p50_ms": await timed({"limit": 50})}
    seeded = time.perf_counter()
    times = spread(patients)
    async with bs.database("sharing") as conn:
        for start in range(0, patients, 2000):
            ids = [uuid.uuid4() for _ in range(start, min(patients, start + 2000))]
            stamp = times[start:start + len(ids)]
            await conn.execute(insert(PatientFile), [
                {"id": f, "owner_id": account, "state": "active", "created_at": at,
                 "updated_at": at, "deleted_at": None} for f, at in zip(ids, stamp, strict=True)])
            await conn.execute(insert(Grant), [
                {"id": uuid.uuid4(), "file_id": f, "grantee_id": account, "granter_id": account,
                 "relationship": "owner", "status": "active", "kind": "direct",
                 "scopes": {"clinical": "append", "shared": "append", "administrative": "append"},
                 "valid_from": None, "valid_until": None, "created_at": at, "revoked_at": None}
                for f, at in zip(ids, stamp, strict=True)])
            tokens = []  # three per file: family name, given name, birth date
            for n, _f in enumerate(ids, start=start):
                tokens += [key.name_token("nom" + _letters(n)),
                           key.name_token("prenom" + _letters(n * 7 + 3)),
                           key.birth_date_token(f"19{40 + n % 60:02d}-{1 + n % 12:02d}-"
                                                f"{1 + n % 28:02d}")]
            await conn.execute(insert(SearchToken), [
                {"file_id": f, "token": t, "owner_id": account}
                for i, f in enumerate(ids) for t in set(tokens[3 * i:3 * i + 3])])
    seed_s = time.perf_counter() - seeded
    after = {"search_p50_ms": await timed({"token": target}),
             "list_p50_ms": await timed({"limit": 50})}
    return {"backend": bs.backend, "patients": patients, "seed_s": round(seed_s, 1),
            "with_1": before, f"with_{patients}": after,
            "search_growth_ratio": round(after["search_p50_ms"] / before["search_p50_ms"], 3)}


async def rotation(bs: BenchStack, records: int = 10_000) -> dict[str, Any]:
    """A file of ``records`` clinical records whose clinical key is rotated by the SDK,
    exactly as ``ecrin sync`` does after a revocation: ``Sharing.rotate`` seals a new key
    version to the members and stores it, then ``Sharing.rekey`` lists the headers on older
    key versions (``GET /v1/records/headers``), verifies each one and re-wraps its content
    key on the device, and posts the new wraps (``POST /v1/records/rekey``), the three
    overlapping. Content and metadata ciphertexts never move.

    The split is each stage's busy time per record (they overlap, so it adds up to more
    than the total); ``cpu_ms_per_record`` is CPU time per process (this client process
    and each service; the PostgreSQL server's own processes are not counted), which the
    load of a shared machine blurs less than wall time."""
    from ecrin_client import EcrinClient, Patients, Profile, Records
    from ecrin_client.kine import PatientIdentity
    from ecrin_client.sharing import RekeyStats, Sharing

    home = bs.work / f"rotation-{uuid.uuid4().hex[:8]}"
    email = f"rotation-{uuid.uuid4().hex[:8]}@example.fr"
    async with EcrinClient(bs.gateway, Profile(home)) as client:
        await client.signup(email, PASSPHRASE, "practitioner")
        await client.login(email, PASSPHRASE)
        identity = await client.unlock(PASSPHRASE)
        sdk = Records(client, identity)
        patient = await Patients(sdk).create(PatientIdentity(
            name="Patient Rotation", birth_date=datetime(1980, 1, 1).date()))
        file_id = uuid.UUID(patient.file_id)
        old = await sdk.scope_key(file_id, Scope.CLINICAL)
        made = time.perf_counter()
        rows = []
        note = metadata("Séance 4 — rééducation épaule droite", 256).to_json()
        for _ in range(records):
            record_id = uuid.uuid4()
            record = encrypt_record(os.urandom(256), note, file_id=file_id,
                                    record_id=record_id, record_version=1, scope_key=old,
                                    author=identity)
            rows.append((record_id, record.header.to_bytes(), record.metadata_ciphertext))
        await _seed_records(bs, identity.account_id, file_id, rows)
        seed_s = time.perf_counter() - made
        stats = RekeyStats()
        cpu = _cpu_times(bs)
        started = time.perf_counter()
        rotated = await Sharing(sdk).rotate(str(file_id), "clinical", stats=stats)
        total = time.perf_counter() - started
        cpu = {name: after - cpu[name] for name, after in _cpu_times(bs).items()}
    assert (rotated.version, rotated.rekeyed, rotated.skipped) == (2, records, 0), rotated
    assert stats.listed == records, stats
    chain_ok, events = await _clinical_chain(bs, file_id)
    per = 1e3 / records
    return {"backend": bs.backend, "records": records, "seed_s": round(seed_s, 1),
            "total_s": round(total, 3), "per_record_ms": round(total * per, 4),
            "keyring_s": round(total - stats.wall_s, 3),
            "list_ms_per_record": round(stats.list_s * per, 4),
            "rewrap_ms_per_record": round(stats.rewrap_s * per, 4),
            "rekey_post_ms_per_record": round(stats.post_s * per, 4),
            "cpu_ms_per_record": {name: round(seconds * per, 4)
                                  for name, seconds in cpu.items()},
            "audit_events": events, "audit_chain_verified": chain_ok}


def _cpu_times(bs: BenchStack) -> dict[str, float]:
    """User + system CPU seconds so far of this process and of each service's process
    tree."""
    out = {"client": sum(os.times()[:2])}
    for service, process in bs.stack.processes.items():
        try:
            proc = psutil.Process(process.pid)
            out[service] = sum(sum(p.cpu_times()[:2])
                               for p in [proc, *proc.children(recursive=True)])
        except psutil.Error:
            out[service] = 0.0
    return out


async def _clinical_chain(bs: BenchStack, file_id: uuid.UUID) -> tuple[bool, int]:
    """The records-api's audit chain of the file's clinical scope verifies (one event per
    re-keyed header)."""
    from ecrin_platform.audit import as_dict, verify_chain
    from records_api.models import AuditEvent

    async with bs.database("records-api") as conn:
        rows = (await conn.execute(select(AuditEvent).where(
            AuditEvent.chain == f"file:{file_id}:clinical").order_by(AuditEvent.seq))).all()
    events = [as_dict(r) for r in rows]
    return verify_chain(events), len(events)
