"""How cost grows with data: one page of a file of 10, 10 000 and 100 000 records; a
patient search among 10 000 patients; re-keying a file of 10 000 records after a scope
rotation, as time per record.

Bulk data is written straight into the services' databases with their own tables (rows
shaped like real ones: 410-byte signed headers, real metadata ciphertexts, blind-index
tokens from a real search key), then ANALYZEd, as a database in service would be. Every
timed request goes through the gateway.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
from sqlalchemy import insert, select

from benchmarks.actors import Practitioner, b64, b64decode, spread
from benchmarks.load import percentile
from benchmarks.services import BenchStack
from ecrin_e2ee import (
    GrantTerms,
    Member,
    Permission,
    RecordHeader,
    Relationship,
    Scope,
    SearchKey,
    rekey_record_header,
    rotate_scope,
)

PAGE = 10
BATCH = 500  # POST /v1/records/rekey takes at most 500 headers


def _letters(n: int) -> str:
    out = ""
    for _ in range(4):
        n, r = divmod(n, 26)
        out += chr(ord("a") + r)
    return out


async def _seed_records(bs: BenchStack, owner: Practitioner, file_id: uuid.UUID,
                        headers: list[tuple[uuid.UUID, bytes, bytes]], chunk: int = 5000
                        ) -> None:
    """Committed records of ``file_id``: (record id, header, metadata ciphertext) each."""
    from records_api.models import Record, RecordVersion

    times = spread(len(headers))
    author = owner.user.account_id
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
        await _seed_records(bs, owner, file_id, [
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
    """A file of ``records`` records whose clinical key is rotated (the new version sealed
    to the owner and stored in the kms); then every header is listed, re-wrapped on the
    device with ``rekey_record_header`` and sent back by ``POST /v1/records/rekey`` in
    batches of 500. Content and metadata ciphertexts never move."""
    owner = Practitioner.sign_up(bs.gateway)
    old = owner.keys[Scope.CLINICAL]
    made = time.perf_counter()
    rows = []
    for _ in range(records):
        record_id, record = owner.encrypt(256)
        rows.append((record_id, record.header.to_bytes(), record.metadata_ciphertext))
    await _seed_records(bs, owner, owner.file_id, rows)
    seed_s = time.perf_counter() - made
    me = Member(owner.user.identity.public_identity(),
                GrantTerms(Relationship.OWNER, frozenset({Permission.READ, Permission.APPEND})))
    async with httpx.AsyncClient(base_url=bs.gateway, headers=owner.headers,
                                 timeout=120) as http:
        started = time.perf_counter()
        rotated = rotate_scope(old, [me], granter=owner.user.identity)
        stored = await http.post(f"/v1/keyrings/{owner.file_id}/entries",
                                 json={"entries": [e.to_json() for e in rotated.entries]})
        stored.raise_for_status()
        keyring_s = time.perf_counter() - started
        listed, cursor = [], None
        while True:
            params: dict[str, Any] = {"file_id": str(owner.file_id), "scope": "clinical",
                                      "limit": 200}
            if cursor:
                params["cursor"] = cursor
            page = (await http.get("/v1/records", params=params)).raise_for_status().json()
            listed += [(item["record_id"], item["version"]["version"],
                        item["version"]["header"]) for item in page["items"]]
            cursor = page["next_cursor"]
            if not cursor:
                break
        list_s = time.perf_counter() - started - keyring_s
        wrap_s = post_s = 0.0
        changed = 0
        for start in range(0, len(listed), BATCH):
            t0 = time.perf_counter()
            items = [{"record_id": rid, "version": version,
                      "header": b64(rekey_record_header(
                          RecordHeader.from_bytes(b64decode(header)), old, rotated.scope_key,
                          owner.user.identity).to_bytes())}
                     for rid, version, header in listed[start:start + BATCH]]
            t1 = time.perf_counter()
            answer = await http.post("/v1/records/rekey", json={"items": items})
            answer.raise_for_status()
            changed += sum(1 for i in answer.json()["items"] if i["changed"])
            wrap_s += t1 - t0
            post_s += time.perf_counter() - t1
        total = time.perf_counter() - started
    assert len(listed) == records and changed == records, (len(listed), changed)
    chain_ok, events = await _file_chain(bs, owner.file_id)
    per = 1e3 / records
    return {"backend": bs.backend, "records": records, "seed_s": round(seed_s, 1),
            "total_s": round(total, 3), "per_record_ms": round(total * per, 4),
            "keyring_s": round(keyring_s, 3), "list_ms_per_record": round(list_s * per, 4),
            "rewrap_ms_per_record": round(wrap_s * per, 4),
            "rekey_post_ms_per_record": round(post_s * per, 4),
            "audit_events": events, "audit_chain_verified": chain_ok}


async def _file_chain(bs: BenchStack, file_id: uuid.UUID) -> tuple[bool, int]:
    """The records-api's audit chain of the file verifies (one event per re-keyed header)."""
    from ecrin_platform.audit import as_dict, verify_chain
    from records_api.models import AuditEvent

    async with bs.database("records-api") as conn:
        rows = (await conn.execute(select(AuditEvent).where(
            AuditEvent.chain == f"file:{file_id}").order_by(AuditEvent.seq))).all()
    events = [as_dict(r) for r in rows]
    return verify_chain(events), len(events)
